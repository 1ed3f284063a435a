"""torch.optim optimizers of the rl-ig family: K-FAC (Kronecker-factored Fisher), Shampoo
(Kronecker-factored AdaGrad) and Adam (the diagonal member)."""

from rl_ig.optim.adam import Adam
from rl_ig.optim.kfac import KFAC
from rl_ig.optim.shampoo import Shampoo

__all__ = ["KFAC", "Adam", "Shampoo"]
