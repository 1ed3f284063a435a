"""On-policy agents on one rollout/GAE/policy stack and the shared policy-Fisher module."""

from agents.common.agent import OnPolicyAgent
from agents.common.checkpoint import CheckpointError
from agents.trpo import TRPO, TRPOConfig

ALGOS: dict[str, type[OnPolicyAgent]] = {"trpo": TRPO}

__all__ = ["ALGOS", "TRPO", "CheckpointError", "OnPolicyAgent", "TRPOConfig"]
