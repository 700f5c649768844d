"""The methods, by the lm-eval model name each is registered under (``module:Class``, imported
only when lm-eval asks for the name). A new method is one module and one line here, or
``symoe_eval.harness.plugin.register_method`` from outside the package."""

from symoe_eval.registry import Registry

METHODS = Registry("method", "symoe_eval.methods.base:Method")
METHODS.register("symoe", "symoe_eval.methods.symoe:SymbolicMoE")
METHODS.register("symoe_expert", "symoe_eval.methods.expert:SingleExpert")
METHODS.register("moa", "symoe_eval.methods.moa:MixtureOfAgents")
METHODS.register("discussion", "symoe_eval.methods.discussion:Discussion")
