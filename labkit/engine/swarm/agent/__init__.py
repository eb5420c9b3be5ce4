"""The agent every active swarm node runs: its Assignments stream, its tasks' containers."""

from labkit.engine.swarm.agent.agent import Agent

__all__ = ["Agent"]
