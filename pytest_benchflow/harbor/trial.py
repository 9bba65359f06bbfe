"""One run of a Harbor task: its image, a sandbox, the agent (or a harness-side one), the verifier, the rewards."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..agent_loop import Tool, record_verification, run_agent, truncate_for_agent
from ..errors import TaskError, VerifierError
from ..redaction import redact
from ..sandbox import ExecResult, Sandbox, SandboxError, SandboxProvider
from .config import HarborTask, HarborTaskError, allowed_variables, substitute
from .images import ensure_image, image_tag

__all__ = ["HARNESS_AGENTS", "HarborVerifierError", "Trial", "TrialOutcome", "read_rewards", "run_trial"]

#: Agents the harness plays itself: ``oracle`` runs solution/solve.sh, ``nop`` does nothing.
HARNESS_AGENTS = ("oracle", "nop")
HarnessAgent = Literal["oracle", "nop"]

VERIFIER_DIR = "/logs/verifier"
# Harbor reads reward.txt first, then reward.json; rewards.json is accepted as another name of the latter.
REWARD_FILES = ("reward.txt", "reward.json", "rewards.json")
_REWARD_CAP = 64 * 1024


class HarborVerifierError(VerifierError):
    """The verifier wrote no reward, wrote one that is not a number, or ran past its time limit."""


class Sandboxes(Protocol):
    """Where a trial opens its sandbox: a task's :class:`~pytest_benchflow.sandbox.TaskSandboxes`."""

    provider: SandboxProvider | None

    def open(self, image: str, **settings: Any) -> Sandbox: ...


@dataclass
class TrialOutcome:
    """What one run of a task gave."""

    rewards: dict[str, float]
    resolved: bool
    #: How the agent's part ended: the agent loop's stop reason, ``oracle`` or ``nop``.
    agent_stop: str
    verifier_exit_code: int
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Trial:
    """The settings of a task's run that are not the task's own."""

    task: HarborTask
    log_dir: Path
    #: The agent's URL (the agent loop), or a harness-side agent.
    agent: str
    harness_agent: HarnessAgent | None = None
    #: is_resolved = reward >= threshold.
    threshold: float = 1.0
    #: Host variables the task's ``${VAR}`` may read (``--benchflow-arg pass_env=A,B``).
    pass_env: str = ""
    environ: Mapping[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def env(self, values: Mapping[str, str], section: str) -> dict[str, str]:
        allowed = allowed_variables(self.pass_env, self.environ)
        resolved = substitute(values, allowed, f"{self.task.task_id}/task.toml [{section}] env")
        # A value taken from the host may be a key: it is masked in whatever the trial writes.
        self.secrets.extend(v for k, v in allowed.items() if "\0" not in k and len(v) >= 4)
        return resolved


def run_trial(trial: Trial, sandboxes: Sandboxes) -> TrialOutcome:
    """Run ``trial.task`` once: build or find its image, open its sandbox, let the agent work within
    ``[agent] timeout_sec``, then copy tests/ to /tests and run ``bash /tests/test.sh`` within ``[verifier]
    timeout_sec`` (in a snapshot when the task asks for a separate verifier), and read the rewards.

    Raises:
        HarborTaskError / BuildError: the task cannot run as written (a ``bench`` error).
        HarborVerifierError: the verifier gave no usable reward (a ``verifier`` error).
        AgentError, SandboxError: as raised by the agent loop and the sandbox.
    """
    task, seconds = trial.task, {}
    started = time.perf_counter()
    image, workdir = _image(trial, sandboxes.provider)
    seconds["image"] = time.perf_counter() - started
    environment_env = trial.env(task.environment_env, "environment")
    agent_env = trial.env(task.agent_env, "agent")
    verifier_env = trial.env(task.verifier_env, "verifier")
    solution_env = trial.env(task.solution_env, "solution")
    settings = {"cpus": task.cpus, "memory_mb": task.memory_mb, "network": task.network, "env": environment_env}
    started = time.perf_counter()
    with sandboxes.open(image, workdir=workdir, **settings) as box:
        _must(box.exec(["mkdir", "-p", "/logs/agent", VERIFIER_DIR], timeout=60), "prepare /logs in the sandbox")
        stop = _agent_phase(trial, box, agent_env, solution_env)
        seconds["agent"] = time.perf_counter() - started
        started = time.perf_counter()
        if task.separate_verifier:
            with box.snapshot() as verifier_box:
                result, rewards = _verify(trial, verifier_box, verifier_env)
        else:
            result, rewards = _verify(trial, box, verifier_env)
        seconds["verifier"] = time.perf_counter() - started
    return TrialOutcome(
        rewards=rewards,
        resolved=_resolved(rewards, trial.threshold),
        agent_stop=stop,
        verifier_exit_code=result.exit_code,
        seconds=seconds,
    )


def _image(trial: Trial, provider: SandboxProvider | None) -> tuple[str, str]:
    """The image the task's sandbox starts from, and its working directory (the image's WORKDIR, or /)."""
    from ..runners.docker_sandbox import DockerSandboxProvider  # the Docker provider's engines build and inspect images

    task = trial.task
    if not isinstance(provider, DockerSandboxProvider):
        if task.docker_image:
            return task.docker_image, "/"
        raise HarborTaskError(f"{task.task_id}: building environment/Dockerfile needs --benchflow-sandbox docker")
    engines = provider.pool.remaining()
    if not engines:
        raise SandboxError("no Docker engine remains for the task's sandbox")
    if task.docker_image:
        inspected = [_pulled(engine, task.docker_image) for engine in engines]
        image = task.docker_image
    else:
        image = image_tag(task.task_id, task.environment_dir)
        log = trial.log_dir / "build.log"
        # Built on every engine of the session: the provider chooses where the sandbox runs.
        inspected = [ensure_image(e, image, task.environment_dir, task.build_timeout_sec, log) for e in engines]
    workdir = (inspected[0].get("Config") or {}).get("WorkingDir") or "/"
    return image, workdir


def _pulled(engine: Any, image: str) -> dict[str, Any]:
    from docker.errors import DockerException, ImageNotFound

    api = engine.client().api
    try:
        found: dict[str, Any] = api.inspect_image(image)
        return found
    except ImageNotFound:
        pass
    try:
        engine.client().images.pull(image)
        pulled: dict[str, Any] = api.inspect_image(image)
        return pulled
    except DockerException as e:
        raise SandboxError(f"cannot pull image {image!r} on {engine.shown}: {e}") from None


def _must(result: ExecResult, doing: str) -> None:
    if not result.ok:
        raise SandboxError(f"cannot {doing}: exit code {result.exit_code}: {(result.stderr or result.stdout)[-300:]}")


def _agent_phase(trial: Trial, box: Sandbox, agent_env: dict[str, str], solution_env: dict[str, str]) -> str:
    task = trial.task
    if trial.harness_agent == "nop":
        return "nop"
    if trial.harness_agent == "oracle":
        if not (task.solution_dir / "solve.sh").is_file():
            raise HarborTaskError(f"{task.task_id}: no solution/solve.sh for --agent oracle")
        box.upload(task.solution_dir, "/solution")
        result = box.exec(
            ["bash", "/solution/solve.sh"],
            timeout=task.agent_timeout_sec,
            env=solution_env,
            user=task.agent_user,
        )
        _save(trial, "agent/oracle.txt", _exec_text(result))
        return "oracle"
    run = run_agent(
        trial.agent,
        box,
        task.instruction,
        tools=[_bash_tool(agent_env, task.agent_user)],
        timeout=task.agent_timeout_sec,
        task={"id": task.task_id},
        sample_id=task.task_id,
    )
    return run.stop_reason


def _bash_tool(env: dict[str, str], user: str | None) -> Tool:
    """The standard ``bash`` tool, its commands run with the task's ``[agent] env`` and user."""
    from ..agent_loop import bash_tool

    standard = bash_tool()

    def run(sandbox: Sandbox, arguments: dict[str, Any], seconds_left: float) -> ExecResult:
        asked = arguments.get("timeout")
        wanted = min(float(asked), 600.0) if isinstance(asked, (int, float)) and asked > 0 else 60.0
        limit = max(1.0, min(wanted, seconds_left))
        return sandbox.exec(["bash", "-c", arguments["command"]], timeout=limit, env=env or None, user=user)

    return Tool(standard.name, standard.description, standard.parameters, run)


def _verify(trial: Trial, box: Sandbox, env: dict[str, str]) -> tuple[ExecResult, dict[str, float]]:
    task = trial.task
    if not (task.tests_dir / "test.sh").is_file():
        raise HarborTaskError(f"{task.task_id}: no tests/test.sh")
    # Only now, after the agent: the tests were never visible to it.
    box.upload(task.tests_dir, "/tests")
    command = ["bash", "/tests/test.sh"]
    result = box.exec(command, timeout=task.verifier_timeout_sec, env=env or None, user=task.verifier_user)
    shown = _masked(trial, result)
    _save(trial, "verifier/stdout.txt", shown.stdout)
    _save(trial, "verifier/stderr.txt", shown.stderr)
    record_verification("bash /tests/test.sh", shown, sample_id=task.task_id)
    _download(box, trial.log_dir / "verifier")
    if result.timed_out:
        raise HarborVerifierError(f"the verifier ran past [verifier] timeout_sec ({task.verifier_timeout_sec:g} s)")
    return result, read_rewards(box, task.task_id, result)


def read_rewards(box: Sandbox, task_id: str, result: ExecResult) -> dict[str, float]:
    """The rewards the verifier left in /logs/verifier: reward.txt (one number, the metric ``reward``), else
    reward.json or rewards.json (an object of numbers).

    Raises:
        HarborVerifierError: no reward file, or one that does not hold what it should.
    """
    for name in REWARD_FILES:
        try:
            data = box.read_file(f"{VERIFIER_DIR}/{name}", _REWARD_CAP)
        except SandboxError:
            continue
        return _parse_rewards(name, data, task_id)
    tail = truncate_for_agent((result.stderr or result.stdout).strip(), 600)
    raise HarborVerifierError(
        f"the verifier wrote no {VERIFIER_DIR}/reward.txt or reward.json "
        f"(test.sh exit code {result.exit_code}){': ' + tail if tail else ''}"
    )


def _parse_rewards(name: str, data: bytes, task_id: str) -> dict[str, float]:
    where = f"{VERIFIER_DIR}/{name}"
    text = data.decode("utf-8", errors="replace").strip()
    if name == "reward.txt":
        rewards: Any = {"reward": _number(text)}
    else:
        try:
            rewards = json.loads(text)
        except (ValueError, RecursionError):
            raise HarborVerifierError(f"{where} is not JSON: {text[:80]!r}") from None
        if not isinstance(rewards, dict) or not rewards:
            raise HarborVerifierError(f"{where} must be an object of named numbers, not {text[:80]!r}")
        rewards = {str(k): _number(v) for k, v in rewards.items()}
    bad = [k for k, v in rewards.items() if v is None]
    if bad:
        raise HarborVerifierError(f"{where}: {bad[0]} is not a finite number: {text[:80]!r}")
    return dict(rewards)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _resolved(rewards: dict[str, float], threshold: float) -> bool:
    """The task is resolved when its reward reaches ``threshold``: the ``reward`` entry when there is one,
    else every reward."""
    if "reward" in rewards:
        return rewards["reward"] >= threshold
    return all(value >= threshold for value in rewards.values())


def _exec_text(result: ExecResult) -> str:
    head = f"exit code {result.exit_code}" + (" (timed out)" if result.timed_out else "")
    return "\n".join(part for part in (head, result.stdout, result.stderr and "[stderr]\n" + result.stderr) if part)


def _masked(trial: Trial, result: ExecResult) -> ExecResult:
    if not trial.secrets:
        return result
    return ExecResult(
        result.exit_code,
        redact(result.stdout, trial.secrets),
        redact(result.stderr, trial.secrets),
        result.timed_out,
        result.truncated,
    )


def _save(trial: Trial, name: str, text: str) -> None:
    path = trial.log_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(text, trial.secrets) if trial.secrets else text, encoding="utf-8")


def _download(box: Sandbox, local: Path) -> None:
    """What the verifier left in /logs/verifier, into the task's logs (best effort: the reward is read apart)."""
    try:
        box.download(VERIFIER_DIR, local / "files")
    except (SandboxError, TaskError, OSError):
        pass
