"""``--benchflow-gate-agent NAME``: a session of several agents fails when the pairwise matrix says so.
``--benchflow-baseline-agent NAME``: which agent of a baseline of several the session's agents are compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from ..errors import ConfigurationError
from ..results.records import bench_key
from ..untrusted import printable
from .agents_given import agents_given

if TYPE_CHECKING:
    from ..results.leaderboard import Leaderboard
    from ..results.reader import RunData
    from .session import BenchflowRun
    from .settings import SessionSettings

__all__ = [
    "BASELINE_AGENT_FLAG",
    "AgentGate",
    "BaselineChoice",
    "baseline_choice",
    "check_baseline_agents",
    "check_gate_agent",
    "gate_failure",
]

#: The option naming the baseline agent the session's agents are compared with.
BASELINE_AGENT_FLAG = "--benchflow-baseline-agent"


@dataclass(frozen=True)
class BaselineChoice:
    """Which agent of a baseline of several the session is compared with: ``agent`` (the option) or, for a
    session of one agent, the baseline agent of the name the user gave it (``named``)."""

    agent: str | None = None
    named: str | None = None


def baseline_choice(settings: SessionSettings) -> BaselineChoice:
    """The session's choice; a usage error when the option comes without a baseline to choose in."""
    if settings.baseline_agent and not settings.baseline:
        raise pytest.UsageError(f"{BASELINE_AGENT_FLAG} {settings.baseline_agent}: give --benchflow-baseline DIR too")
    try:
        given = agents_given(settings.agent_url, settings.agent, settings.agent_cmd)
    except ConfigurationError:
        given = []  # reported where the agents start
    # One agent's name is dropped from its items and records (they look as they always did): kept here only.
    named = given[0].name if len(given) == 1 else None
    return BaselineChoice(settings.baseline_agent, named)


def check_baseline_agents(run: BenchflowRun, base: RunData | None, choice: BaselineChoice) -> None:
    """A usage error, before any task runs, when the baseline and the session share no bench, or the session's
    agents cannot be paired with the baseline's (a baseline of several, a session of one, no choice)."""
    if base is None:
        return
    # Imported here: a session without a baseline does not load the comparison.
    from ..results.compare import NOTHING_COMPARED, BaselineChoiceError, pair_benches, run_keys, split_key

    keys = [bench_key(name, agent) for name in run.benches for agent in run.agents or [""]]
    try:
        pairing = pair_benches(
            run_keys(base), keys, base_agent=choice.agent, new_name=choice.named, flag=BASELINE_AGENT_FLAG
        )
    except BaselineChoiceError as e:
        raise pytest.UsageError(f"--benchflow-baseline: {e}") from None
    if not pairing.pairs:
        theirs = printable(", ".join(dict.fromkeys(split_key(k)[0] for k in run_keys(base))), 300) or "none"
        raise pytest.UsageError(
            f"--benchflow-baseline {base.path}: {NOTHING_COMPARED} (the baseline's benches: {theirs}; "
            f"this session's: {', '.join(run.benches)})"
        )


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
