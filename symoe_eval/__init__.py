"""symoe-eval: Symbolic Mixture-of-Experts and its baselines as lm-evaluation-harness models.

Kept import-free on purpose: the ``symoe_eval.pth`` start-up hook imports this package in every
Python process, so anything heavy belongs in submodules.
"""

__version__ = "0.1.0"

from symoe_eval import moved

moved.install()
