"""``--benchflow-gate-agent NAME``: a session of several agents fails when the pairwise matrix says so."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ..results.leaderboard import Leaderboard

__all__ = ["GATE_MODES", "AgentGate", "check_gate_agent", "gate_failure"]

#: worse: no other agent may be significantly worse than NAME; better: NAME must be significantly better than each.
GATE_MODES = ("worse", "better")


@dataclass(frozen=True)
class AgentGate:
    agent: str | None
    mode: str = "worse"


def check_gate_agent(gate: AgentGate, agents: dict[str, str]) -> None:
    """A usage error when the gate names no agent of the session (before any task runs)."""
    if gate.agent is None:
        return
    if not agents:
        raise pytest.UsageError(
            f"--benchflow-gate-agent {gate.agent}: the session evaluates one agent; give several "
            "(--agent-url NAME=URL …)"
        )
    if gate.agent not in agents:
        raise pytest.UsageError(
            f"--benchflow-gate-agent {gate.agent!r}: no such agent (the session's: {', '.join(agents)})"
        )


def gate_failure(gate: AgentGate, boards: list[Leaderboard]) -> str | None:
    """Why the session fails by the gate, None when it passes."""
    if gate.agent is None:
        return None
    failing = []
    for board in boards:
        for row in board.agents:
            if row.agent == gate.agent:
                continue
            pair = board.pair(gate.agent, row.agent)
            if pair is None:
                continue
            ahead = pair.significant and pair.difference > 0
            if gate.mode == "worse" and ahead:
                failing.append(f"{row.agent} is significantly worse than {gate.agent} on {board.bench}")
            elif gate.mode == "better" and not ahead:
                failing.append(f"{gate.agent} is not significantly better than {row.agent} on {board.bench}")
    if not failing:
        return None
    return "; ".join(failing) + f" (--benchflow-gate-agent {gate.agent} --benchflow-gate-mode {gate.mode})"
