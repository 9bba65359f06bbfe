"""Node ids as arguments: ``pytest "benchflow:mmlu_pro::law"`` runs that task, and implies its bench."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from .items import NODE_PREFIX, run_names, split_epoch, split_run

__all__ = ["rewrite_node_id_arguments", "select_agent_items", "select_tasks", "selected_benches"]


def rewrite_node_id_arguments(config: pytest.Config, args: list[str]) -> None:
    """Turn each positional ``benchflow:…`` argument into a hidden ``--benchflow-select`` (in place).

    A node id is not a path: pytest would answer "file or directory not found". As an option
    it also reaches xdist workers with the others.
    """
    positional = set(getattr(config.known_args_namespace, "file_or_dir", None) or [])
    for i, arg in enumerate(args):
        if arg.startswith(NODE_PREFIX) and arg in positional and (i == 0 or args[i - 1] != "--deselect"):
            args[i] = f"--benchflow-select={arg}"


def selected_benches(nodeids: Iterable[str]) -> list[str]:
    """Bench names of the node ids given as arguments (``benchflow:<bench>[::<task>]``)."""
    return list(dict.fromkeys(nodeid[len(NODE_PREFIX) :].partition("::")[0] for nodeid in nodeids))


def select_tasks(nodeids: Iterable[str], bench: str, runs: list[tuple[str, int]], epochs: int) -> list[tuple[str, int]]:
    """The (task, epoch) runs of ``bench`` the node ids given as arguments name: all for ``benchflow:<bench>``
    or no node ids."""
    selected = set(nodeids)
    prefix = f"{NODE_PREFIX}{bench}"
    if not selected or prefix in selected:
        return runs
    wanted = {nodeid[len(prefix) + 2 :] for nodeid in selected if nodeid.startswith(prefix + "::")}
    named = [(run, run_names(run[0], run[1], epochs)[0]) for run in runs]
    # One agent's item of a session of several (``law[gpt4o]``) selects its task here, its agent when items are made.
    known = {name for _, name in named}
    wanted = {w if w in known else _without_agent(w, epochs) for w in wanted}
    chosen = [run for run, name in named if name in wanted]
    missing = wanted - {name for _, name in named}
    if missing:
        first = sorted(missing)[0]
        raise pytest.UsageError(
            f"{prefix}::{first}: no such task in {bench} ({len({t for t, _ in runs})} tasks; "
            f"`pytest --collect-only -q` lists their node ids){_epoch_hint(first, epochs)}"
        )
    return chosen


def _epoch_hint(name: str, epochs: int) -> str:
    """Why a node id with (or without) an epoch suffix names nothing in a session of ``epochs`` epochs."""
    task, epoch = split_epoch(name)
    if epoch is not None and epoch > epochs:
        runs = "runs each task once" if epochs == 1 else f"runs {epochs} epochs"
        return f"; this session {runs}: add --benchflow-epochs {epoch} to run {task}[epoch{epoch}]"
    if epoch is None and epochs > 1:
        return f"; with --benchflow-epochs each epoch is an item: {name}[epoch1] … {name}[epoch{epochs}]"
    return ""


def _without_agent(name: str, epochs: int) -> str:
    """The task's item name in ``name`` of one agent's item (``law[gpt4o-epoch2]`` → ``law[epoch2]``)."""
    task, epoch, agent = split_run(name, True)
    if not agent or (epoch is not None) != (epochs > 1):
        return name
    return run_names(task, epoch or 1, epochs)[0]


def select_agent_items(config: pytest.Config, items: list[pytest.Item]) -> list[pytest.Item]:
    """With several agents: of a bench whose node ids were given by item, only the items given (one agent's)."""
    selected = set(config.getoption("benchflow_select", None) or [])
    if not selected:
        return items
    whole = {nodeid for nodeid in selected if "::" not in nodeid}
    tasks = {nodeid for nodeid in selected if "::" in nodeid}
    # A task's node id without an agent (``law``) selects every agent's item of it.
    plain = {n for n in tasks if not split_run(n.partition("::")[2], True)[2]}
    return [
        item
        for item in items
        if item.nodeid in tasks or item.nodeid.partition("::")[0] in whole or _task_node(item.nodeid) in plain
    ]


def _task_node(nodeid: str) -> str:
    bench, _, name = nodeid.partition("::")
    task, epoch, _agent = split_run(name, True)
    return f"{bench}::{task}" + (f"[epoch{epoch}]" if epoch else "")
