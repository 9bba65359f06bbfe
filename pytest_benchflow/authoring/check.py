"""``pytest-benchflow check PATH|NAME``: the publishing checklist, each item held or not, with the fix.

The items of a bench (:data:`BENCH_ITEMS`, in order):

- ``loads``: the bench's class imports and is a complete ``BaseBench``;
- ``readme``: its model card (``README.md`` beside ``bench.py``, or up to the project directory) has the
  sections :data:`SECTIONS`;
- ``arguments``: ``get_args(None)`` returns ``BenchArgs`` and the README's "Arguments" section names each
  argument in backticks;
- ``tasks``: ``get_all_tasks`` returns task ids for each split in ``splits``;
- ``in_process``: one task runs in this process, with the reference agent behind a recording agent on loopback;
- ``results``: ``get_result`` of that task validates as a ``BenchmarkResult``;
- ``input_keys``: the README's "Input keys" section names, in backticks, every key the agent received
  (what ``prepare_input`` returned, as recorded);
- ``no_label_leak``: no request to the agent holds a key of the bench's ``answer_fields``, at any depth;
- ``image_builds`` and ``in_container`` (container benches): ``pytest-benchflow build`` builds its image offline,
  and one task runs in it with the Docker runner, the same agent recording.

Exit 0 only when every item holds (an item that does not apply is skipped, saying why).

The checklist is chosen by what the target is (:func:`run_checklist`, ``_CHECKLISTS``): ``harbor:PATH`` gets
the Harbor one (each task's solution passes, doing nothing fails), anything else the bench checklist.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..agent_server import AgentServer, BaseAgent
from ..bench import BaseBench, list_task_ids
from ..bench_lookup import import_object
from ..errors import BenchflowError, first_line
from ..harbor.bench import HARBOR_SCHEME
from ..runners.base import Runner, TaskSpec, collect_result, prepare_task
from ..runners.labels import BENCH_LABEL, RUN_LABEL, TASK_LABEL
from ..schemas import BenchArgs, BenchmarkResult
from .project import BenchProject, find_project

__all__ = ["BENCH_ITEMS", "SECTIONS", "ChecklistReport", "Item", "run_checklist"]

BENCH_ITEMS = (
    "loads", "readme", "arguments", "tasks", "in_process", "results",
    "input_keys", "no_label_leak", "image_builds", "in_container",
)  # fmt: skip
#: The model card's sections (headings that start with these words, any level, any case).
SECTIONS = ("Input keys", "Arguments", "Scoring", "Data provenance")
# A task of the checklist may take this long (a container's start included).
_TASK_TIMEOUT = 600.0

Status = Literal["held", "not held", "skipped"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Item:
    """One checklist item: held, not held (with the fix), or skipped (with why)."""

    name: str
    status: Status
    detail: str = ""
    fix: str = ""

    def __str__(self) -> str:
        line = f"{self.status:<9} {self.name}" + (f": {self.detail}" if self.detail else "")
        return line + (f" — fix: {self.fix}" if self.fix else "")


@dataclass
class ChecklistReport:
    target: str
    items: list[Item] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return all(i.status != "not held" for i in self.items)

    def __getitem__(self, name: str) -> Item:
        return next(i for i in self.items if i.name == name)

    def summary(self) -> str:
        failed = [i.name for i in self.items if i.status == "not held"]
        if not failed:
            return f"{self.target}: every item holds ({sum(i.status == 'held' for i in self.items)} held)"
        return f"{self.target}: {len(failed)} item(s) do not hold: {', '.join(failed)}"


class _NotHeld(Exception):
    def __init__(self, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class _Skip(Exception):
    pass


class _Recorder(BaseAgent):
    """The reference agent, with every request it receives kept."""

    def __init__(self, inner: BaseAgent) -> None:
        self.inner = inner
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def call_api(self, task_step_inputs: dict[str, Any]) -> Any:
        with self._lock:
            self.requests.append(task_step_inputs)
        return self.inner.call_api(task_step_inputs)

    def info(self) -> dict[str, Any]:
        return {"name": f"recording {type(self.inner).__name__}"}


@dataclass
class _State:
    """What the items learn as they run, for the ones after them."""

    project: BenchProject | None = None
    bench: BaseBench | None = None
    readme: str | None = None
    task_id: str | None = None
    result: BenchmarkResult | None = None
    run_error: str | None = None
    recorder: _Recorder | None = None
    image_built: bool | None = None


def run_checklist(
    target: str,
    *,
    agent: str | None = None,
    build: bool = True,
    base_image: str | None = None,
    log: Log = lambda line: None,
) -> ChecklistReport:
    """Run the checklist that fits ``target``; each item is logged as it is decided."""
    for applies, checklist in _CHECKLISTS:
        if applies(target):
            return checklist(target, agent=agent, build=build, base_image=base_image, log=log)
    raise BenchflowError(f"{target}: not a bench project directory nor a bench name")


def _is_bench(target: str) -> bool:
    return True  # anything else is tried as a bench; find_project says what is wrong with it


def _bench_checklist(
    target: str, *, agent: str | None, build: bool, base_image: str | None, log: Log
) -> ChecklistReport:
    report, state = ChecklistReport(target), _State()
    with tempfile.TemporaryDirectory(prefix="benchflow-check-") as work:
        steps: list[tuple[str, Callable[[], str]]] = [
            ("loads", lambda: _loads(state, target)),
            ("readme", lambda: _readme(state)),
            ("arguments", lambda: _arguments(state)),
            ("tasks", lambda: _tasks(state)),
            ("in_process", lambda: _in_process(state, agent, Path(work))),
            ("results", lambda: _results(state)),
            ("input_keys", lambda: _input_keys(state)),
            ("no_label_leak", lambda: _no_label_leak(state)),
            ("image_builds", lambda: _image_builds(state, build, base_image)),
            ("in_container", lambda: _in_container(state, agent, Path(work))),
        ]
        for name, step in steps:
            item = _decide(name, step, loaded=state.bench is not None or name == "loads")
            report.items.append(item)
            log(str(item))
    return report


#: (does it apply to the target, its checklist), tried in order. Harbor task directories go before benches.
def _is_harbor(target: str) -> bool:
    return target.startswith(HARBOR_SCHEME)


def _harbor_checklist(target: str, *, log: Log, **_: object) -> ChecklistReport:
    """Harbor task directories: each task's solution passes (oracle) and doing nothing fails (nop)."""
    from ..harbor.check import check_harbor
    from ..harbor.config import find_tasks

    path = Path(target.removeprefix(HARBOR_SCHEME))
    report = ChecklistReport(target)
    try:
        tasks = list(find_tasks(path))
    except BenchflowError as e:
        report.items.append(Item("tasks found", "not held", str(e), "give a task directory or a tree of them"))
        return report
    report.items.append(Item("tasks found", "held", f"{len(tasks)} task(s)"))
    log(str(report.items[-1]))
    found: dict[str, list[str]] = {}
    for finding in check_harbor(path, progress=lambda task_id: log(f"checking {task_id}")):
        found.setdefault(finding.task_id, []).append(f"{finding.problem} ({finding.agent}): {finding.detail}")
    fix = "make solution/solve.sh pass tests/test.sh, and tests/test.sh fail on the untouched environment"
    for task_id in tasks:
        problems = found.get(task_id)
        item = (
            Item(task_id, "not held", "; ".join(problems), fix)
            if problems
            else Item(task_id, "held", "oracle passes, nop fails")
        )
        report.items.append(item)
        log(str(item))
    return report


# Harbor first: a bench reference never starts with its scheme.
_CHECKLISTS: list[tuple[Callable[[str], bool], Callable[..., ChecklistReport]]] = [
    (_is_harbor, _harbor_checklist),
    (_is_bench, _bench_checklist),
]


def _decide(name: str, step: Callable[[], str], *, loaded: bool) -> Item:
    if not loaded:
        return Item(name, "skipped", "the bench did not load")
    try:
        return Item(name, "held", step())
    except _NotHeld as e:
        return Item(name, "not held", e.detail, e.fix)
    except _Skip as e:
        return Item(name, "skipped", str(e))
    except BenchflowError as e:
        return Item(name, "not held", first_line(str(e)))
    except Exception as e:  # the bench's own code broke: that is what the checklist is for
        return Item(name, "not held", f"{type(e).__name__}: {first_line(str(e))}")


def _loads(state: _State, target: str) -> str:
    project = find_project(target)
    state.project = project
    try:
        state.bench = project.cls()
    except Exception as e:
        raise _NotHeld(f"{project.cls.__name__}() raised {type(e).__name__}: {first_line(str(e))}") from None
    return f"{project.cls.__module__}:{project.cls.__qualname__}"


def _readme(state: _State) -> str:
    assert state.project is not None
    path = state.project.readme()
    if path is None:
        raise _NotHeld(
            "no README.md (the model card) beside the bench's module",
            f"write one with the sections {', '.join(SECTIONS)} (`pytest-benchflow new` writes a template)",
        )
    state.readme = path.read_text(encoding="utf-8", errors="replace")
    missing = [s for s in SECTIONS if _section(state.readme, s) is None]
    if missing:
        raise _NotHeld(f"{path.name} has no section {', '.join(repr(s) for s in missing)}", "add a heading for each")
    return str(path)


def _section(text: str, title: str) -> str | None:
    """The text under the heading that starts with ``title``, up to the next heading of that level or above."""
    found = re.search(rf"^(#+)[ \t]*{re.escape(title)}[^\n]*$", text, re.M | re.I)
    if found is None:
        return None
    level = len(found[1])
    end = re.search(rf"^#{{1,{level}}}[ \t]", text[found.end() :], re.M)
    return text[found.end() : found.end() + end.start()] if end else text[found.end() :]


def _undocumented(names: list[str], section: str) -> list[str]:
    return [n for n in names if f"`{n}`" not in section]


def _arguments(state: _State) -> str:
    bench = state.bench
    assert bench is not None
    try:
        spec = bench.get_args(None)
    except Exception as e:
        raise _NotHeld(
            f"get_args(None) raised {type(e).__name__}: {first_line(str(e))}", "make get_args work without a task"
        ) from None
    if not isinstance(spec, BenchArgs):
        raise _NotHeld(
            f"get_args(None) returned {type(spec).__name__}", "return BenchArgs({...}) (BenchArgs(None) for none)"
        )
    values = {n: os.environ[n] for n in spec.names if n in os.environ}
    bench.args = spec.resolve(values)
    if state.readme is None:
        raise _Skip("no README to look in")
    missing = _undocumented(spec.names, _section(state.readme, "Arguments") or "")
    if missing:
        raise _NotHeld(
            f"{', '.join(missing)} not documented in the README's Arguments section",
            "name each argument there in backticks, with its default and meaning",
        )
    return f"{len(spec.names)} argument(s), each documented"


def _tasks(state: _State) -> str:
    bench = state.bench
    assert bench is not None
    counts = []
    for split in type(bench).splits:
        ids = list_task_ids(bench, split)
        state.task_id = state.task_id or ids[0]
        counts.append(f"{split}: {len(ids)}")
    if not counts:
        raise _NotHeld("the bench declares no splits", "set splits = ('test',) or the splits it has")
    return ", ".join(counts)


def _reference_agent(state: _State, agent: str | None) -> BaseAgent:
    assert state.project is not None
    ref = agent or f"{state.project.cls.__module__.split('.')[0]}.agent:ReferenceAgent"
    try:
        cls = import_object(ref, what=f"reference agent {ref!r}")
    except BenchflowError as e:
        raise _NotHeld(
            first_line(str(e)), "give --agent module:Class (the scaffold's is NAME.agent:ReferenceAgent)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        raise _NotHeld(f"{ref} is not a BaseAgent subclass", "give --agent module:Class of a BaseAgent")
    return cls()


def _run_one(state: _State, runner: Runner, run_id: str, agent: str | None, work: Path, where: str) -> BenchmarkResult:
    bench, task_id = state.bench, state.task_id
    assert bench is not None
    if task_id is None:
        raise _Skip("no task to run (the task listing failed)")
    recorder = state.recorder = state.recorder or _Recorder(_reference_agent(state, agent))
    directory = work / run_id
    name = state.project.name if state.project else type(bench).__name__
    with AgentServer(recorder).start() as server:
        spec = TaskSpec(
            bench_name=name, task_id=task_id, agent_url=server.url, args=bench.args,
            results_dir=directory / "results", log_dir=directory / "logs", timeout=_TASK_TIMEOUT,
            labels={RUN_LABEL: run_id, BENCH_LABEL: name, TASK_LABEL: task_id},
            secret_values=bench.args.secret_values(), transcripts=False, run_dir=directory,
        )  # fmt: skip
        try:
            runner.start(server.url)
            runner.start_bench(bench)
            runner.execute(bench, spec, prepare_task(spec))
        except BenchflowError as e:
            raise _NotHeld(f"task {task_id!r} {where} errored: {first_line(str(e))}") from None
        finally:
            spec.close()
            runner.cleanup_run()
    return collect_result(bench, spec)


def _in_process(state: _State, agent: str | None, work: Path) -> str:
    from ..runners.local import LocalRunner

    assert state.bench is not None
    if state.bench.get_entrypoint() is None:
        raise _Skip("no in-process entrance (get_entrypoint returns None)")
    try:
        state.result = _run_one(state, LocalRunner(), f"check-{secrets.token_hex(6)}", agent, work, "in-process")
    except BenchflowError as e:
        state.run_error = first_line(str(e))
        raise
    return f"task {state.task_id!r}: {'resolved' if state.result.is_resolved else 'not resolved'}"


def _results(state: _State) -> str:
    if state.run_error:
        raise _NotHeld(state.run_error, "get_result must read what the entrance wrote and return a BenchmarkResult")
    if state.result is None:
        raise _Skip("no task ran in-process")
    return f"metrics: {', '.join(sorted(state.result.metrics)) or 'none'}"


def _input_keys(state: _State) -> str:
    recorder = state.recorder
    if recorder is None or not recorder.requests:
        raise _Skip("no request reached the agent")
    if state.readme is None:
        raise _Skip("no README to look in")
    keys = sorted({k for request in recorder.requests for k in request})
    missing = _undocumented(keys, _section(state.readme, "Input keys") or "")
    if missing:
        raise _NotHeld(
            f"the agent receives {', '.join(missing)}, not documented in the README's Input keys section",
            "name each key prepare_input returns there in backticks, with its meaning",
        )
    return f"{', '.join(keys)}"


def _paths(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key, where) of every key in a JSON value, at any depth."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield str(key), where
            yield from _paths(inner, where)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, f"{path}[{index}]")


def _no_label_leak(state: _State) -> str:
    assert state.bench is not None
    fields = type(state.bench).answer_fields
    if not fields:
        raise _NotHeld(
            "the bench declares no answer_fields, so a leaked label cannot be looked for",
            'set answer_fields = ("answer",) — the keys that hold the gold answer in its data',
        )
    recorder = state.recorder
    if recorder is None or not recorder.requests:
        raise _Skip("no request reached the agent")
    leaks = sorted({where for request in recorder.requests for key, where in _paths(request) if key in fields})
    if leaks:
        raise _NotHeld(
            f"the agent receives the gold answer at {', '.join(leaks[:5])}",
            "leave the answer fields out of what prepare_input returns",
        )
    return f"none of {', '.join(fields)} in {len(recorder.requests)} request(s)"


def _has_container(state: _State) -> bool:
    bench = state.bench
    assert bench is not None
    return bool(
        bench.get_image_name() and bench.get_results_dir_in_container() and bench.get_log_files_dir_in_container()
    )


def _image_builds(state: _State, build: bool, base_image: str | None) -> str:
    from .build import build_image

    assert state.project is not None
    if not _has_container(state):
        raise _Skip("not a container bench")
    if not build:
        raise _Skip("--no-build: the image is used as it is")
    if state.project.directory is None:
        raise _Skip("a bench name, not its project directory: give the directory to build its image")
    state.image_built = False
    built = build_image(state.project, base_image=base_image)
    state.image_built = True
    return f"{built.image} on {built.base} (Python {built.python})"


def _in_container(state: _State, agent: str | None, work: Path) -> str:
    from ..runners.docker import DockerRunner

    if not _has_container(state):
        raise _Skip("not a container bench")
    if state.image_built is False:
        raise _Skip("the image did not build")
    run_id = f"check-{secrets.token_hex(6)}"
    runner = DockerRunner(run_id, pull="never" if state.image_built else "missing")
    before = len(state.recorder.requests) if state.recorder else 0
    result = _run_one(state, runner, run_id, agent, work, "in its container")
    recorder = state.recorder
    if recorder is not None:
        # What the container's client sent is checked like the in-process requests.
        new = recorder.requests[before:]
        if new and state.bench is not None:
            fields = type(state.bench).answer_fields
            leaks = sorted({w for r in new for k, w in _paths(r) if k in fields})
            if leaks:
                raise _NotHeld(f"in the container the agent receives the gold answer at {', '.join(leaks[:5])}")
    return f"task {state.task_id!r}: {'resolved' if result.is_resolved else 'not resolved'}"
