"""torch.optim optimizers of the rl-ig family: K-FAC (Kronecker-factored Fisher) and Adam
(the diagonal member)."""

from rl_ig.optim.adam import Adam
from rl_ig.optim.kfac import KFAC

__all__ = ["KFAC", "Adam"]
