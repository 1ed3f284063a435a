"""rl-ig: the geometry of parameter space for reinforcement learning and supervised training.

Subpackages:
    fisher: the policy-Fisher module (KL, Fisher-vector products, conjugate gradient).
"""

__version__ = "0.1.0"
