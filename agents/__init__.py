"""On-policy agents on one rollout/GAE/policy stack and the shared policy-Fisher module."""

from agents.a2c import A2C, A2CConfig
from agents.acktr import ACKTR, ACKTRConfig
from agents.common.agent import OnPolicyAgent
from agents.common.checkpoint import CheckpointError
from agents.npg import NPG, NPGConfig
from agents.ppo import PPO, PPOConfig
from agents.trpo import TRPO, TRPOConfig

ALGOS: dict[str, type[OnPolicyAgent]] = {
    "trpo": TRPO,
    "npg": NPG,
    "ppo": PPO,
    "acktr": ACKTR,
    "a2c": A2C,
}

__all__ = [
    "A2C",
    "ACKTR",
    "ALGOS",
    "NPG",
    "PPO",
    "TRPO",
    "A2CConfig",
    "ACKTRConfig",
    "CheckpointError",
    "NPGConfig",
    "OnPolicyAgent",
    "PPOConfig",
    "TRPOConfig",
]
