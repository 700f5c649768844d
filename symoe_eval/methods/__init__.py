"""The methods, by the lm-eval model name each is registered under (``module:Class``, imported
only when lm-eval asks for the name). A new method is one module and one line here, or
``symoe_eval.harness.plugin.register_method`` from outside the package."""

METHODS = {
    "symoe": "symoe_eval.methods.symoe:SymbolicMoE",
    "symoe_expert": "symoe_eval.methods.expert:SingleExpert",
    "moa": "symoe_eval.methods.moa:MixtureOfAgents",
    "discussion": "symoe_eval.methods.discussion:Discussion",
}
