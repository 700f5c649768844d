"""symoe-eval: Symbolic Mixture-of-Experts and its baselines as lm-evaluation-harness models.

Kept light on purpose: the ``symoe_eval.pth`` start-up hook imports this package in every Python
process, so it imports only ``moved`` (the finder that keeps old module names importable, standard
library alone) and anything heavy belongs in submodules.
"""

__version__ = "0.1.0"

from symoe_eval import moved

moved.install()
