"""``pytest-benchflow new NAME [--container]``: a working bench package, ready for ``check`` and publishing.

The package it writes (``NAME/`` in the current directory)::

    NAME/pyproject.toml          registers NAME under the pytest_benchflow.benchmarks entry point
    NAME/Dockerfile              with --container: the image `pytest-benchflow build` builds
    NAME/NAME/README.md          the model card: input keys, arguments, scoring, data provenance and licence
    NAME/NAME/bench.py           the BaseBench subclass
    NAME/NAME/evaluate.py        the BenchClient (prepare_input, parse_response) and the evaluation entrance
    NAME/NAME/__main__.py        the container's entrypoint: the same entrance, on the container's environment
    NAME/NAME/agent.py           ReferenceAgent, a tiny agent that solves the demo tasks
    NAME/NAME/data/tasks.json    five demo tasks (written by this command; replace them with the real data)
    NAME/tests/test_NAME.py      runs every task with the reference agent
"""

from __future__ import annotations

import keyword
import sys
from pathlib import Path

from ..errors import BenchflowError

__all__ = ["ScaffoldError", "check_name", "new_bench", "scaffold_files"]


class ScaffoldError(BenchflowError):
    """``new`` refused: a bad name or a directory that is in use."""


def check_name(name: str) -> None:
    """Refuse a name that cannot be a Python package (and entry point) of its own.

    Raises:
        ScaffoldError: one line saying what to choose instead.
    """
    if not name.isidentifier() or not name.isascii():
        raise ScaffoldError(f"{name!r} is not a Python identifier: use letters, digits and _ (e.g. my_bench)")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: choose another name (e.g. {name}_bench)")
    if name in sys.stdlib_module_names or name in ("pytest", "pytest_benchflow", "benchflow"):
        raise ScaffoldError(f"{name!r} would shadow the module of that name: choose another (e.g. {name}_bench)")


def _class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Bench"


def new_bench(name: str, parent: Path, *, container: bool) -> Path:
    """Write the package ``name`` into ``parent / name``; the directory written.

    Raises:
        ScaffoldError: a bad name, or ``parent / name`` exists and is not an empty directory (nothing is written).
    """
    check_name(name)
    target = parent / name
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ScaffoldError(f"{target} exists and is not a directory: choose another name or remove it")
    if target.is_dir() and any(target.iterdir()):
        raise ScaffoldError(f"{target} is not empty: refusing to write over it (choose another name or directory)")
    files = scaffold_files(name, container=container)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def scaffold_files(name: str, *, container: bool) -> dict[str, str]:
    """The package's files, by path relative to its directory."""
    cls = _class_name(name)
    values = {"name": name, "cls": cls, "dist": name.replace("_", "-"), "image": f"{name.lower()}:0.1.0"}
    files = {
        "pyproject.toml": _PYPROJECT,
        f"{name}/__init__.py": _INIT,
        f"{name}/__main__.py": _MAIN,
        f"{name}/bench.py": _BENCH + (_CONTAINER_METHODS if container else ""),
        f"{name}/evaluate.py": _EVALUATE,
        f"{name}/agent.py": _AGENT,
        f"{name}/data/tasks.json": _TASKS,
        f"{name}/README.md": _README + (_README_CONTAINER if container else ""),
        f"tests/test_{name}.py": _TEST,
    }
    if container:
        files["Dockerfile"] = _DOCKERFILE
    return {path: _fill(text, values) for path, text in files.items()}


def _fill(text: str, values: dict[str, str]) -> str:
    # Placeholders are @name@: the templates hold Python and TOML full of braces.
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "@dist@"
version = "0.1.0"
description = "@cls@: a benchmark for pytest-benchflow"
readme = "@name@/README.md"
requires-python = ">=3.10"
dependencies = ["pytest-benchflow>=0.2"]

[project.entry-points."pytest_benchflow.benchmarks"]
@name@ = "@name@.bench:@cls@"

[tool.setuptools]
packages = ["@name@"]

[tool.setuptools.package-data]
@name@ = ["README.md", "data/*.json"]
"""

_INIT = '''"""@cls@: a benchmark for pytest-benchflow (see README.md, its model card)."""
'''

_MAIN = '''"""``python -m @name@``: the container's entrypoint, the same entrance the in-process runner calls."""

import os
import sys

from .evaluate import evaluate

evaluate(os.environ)
sys.exit(0)
'''

_BENCH = '''"""``@cls@``: the benchmark as pytest-benchflow sees it (its tasks, arguments and how a task is scored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_benchflow import BaseBench, BenchArgs, BenchmarkResult, SampleResult
from pytest_benchflow.bench import Entrance

from .evaluate import DEFAULTS, evaluate, load_tasks

__all__ = ["@cls@"]


class @cls@(BaseBench):
    """One task per question of the data file; a task passes when the agent's answer is the expected one."""

    description = "@cls@: short questions with one expected answer each"
    splits = ("test",)
    summary_metrics = ("score",)
    # The gold answer: it must never reach the agent (`pytest-benchflow check` looks for it in every request).
    answer_fields = ("answer",)

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs({"optional": dict(DEFAULTS)})

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        try:
            tasks = load_tasks(self.args.get("DATA_FILE", ""))
        except (OSError, ValueError) as e:
            return {"task_ids": [], "error_message": str(e)}
        return {"task_ids": [task["id"] for task in tasks], "error_message": None}

    def get_input_files(self, task_id: str) -> dict[str, str]:
        # A data file on this machine is copied into the task's container, and DATA_FILE names the copy there.
        data_file = self.args.get("DATA_FILE", "")
        return {"DATA_FILE": data_file} if data_file else {}

    def get_entrypoint(self) -> Entrance:
        return evaluate

    def get_result(self, task_id: str) -> BenchmarkResult:
        result = json.loads(Path(str(self.results_dir), "result.json").read_text(encoding="utf-8"))
        return BenchmarkResult(
            task_id=task_id,
            is_resolved=result["correct"],
            metrics={"score": float(result["correct"])},
            log={"text": f"expected {result['expected']!r}, answered {result['answer']!r}"},
            samples=[SampleResult(sample_id=task_id, score=float(result["correct"]))],
        )
'''

_CONTAINER_METHODS = """
    # In a container (`--benchflow-runner docker`): the image `pytest-benchflow build` builds from ../Dockerfile.
    def get_image_name(self) -> str:
        return "@image@"

    def get_results_dir_in_container(self) -> str:
        return "/app/results"

    def get_log_files_dir_in_container(self) -> str:
        return "/app/logs"
"""

_EVALUATE = '''"""The evaluation of one task: the same function runs in-process and as the container's entrypoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_benchflow import BenchClient

__all__ = ["DEFAULTS", "TASKS", "@cls@Client", "evaluate", "load_tasks"]

#: The demo tasks shipped in the package (replace them with the real data, and say where it comes from in README.md).
TASKS = Path(__file__).parent / "data" / "tasks.json"
#: The arguments and their defaults (documented in README.md, "Arguments").
DEFAULTS: dict[str, Any] = {"DATA_FILE": ""}


class @cls@Client(BenchClient):
    """What the agent receives (documented in README.md, "Input keys") and how its answer is read."""

    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        # Only the question: the task's answer stays here.
        return {"question": raw_step_inputs["question"]}

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response.strip()}


def load_tasks(data_file: str = "") -> list[dict[str, Any]]:
    """The tasks of ``data_file`` (default: the demo tasks): a JSON list of {"id", "question", "answer"}."""
    path = Path(data_file) if data_file else TASKS
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    tasks = json.loads(path.read_text(encoding="utf-8"))
    fields = {"id", "question", "answer"}
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and fields <= set(t) for t in tasks):
        raise ValueError(f"{path}: expected a JSON list of objects with id, question and answer")
    return tasks


def evaluate(env: Mapping[str, str]) -> None:
    """Ask the agent the task's question and write ``result.json`` to the results directory."""
    tasks = {task["id"]: task for task in load_tasks(env.get("DATA_FILE", ""))}
    task = tasks[env["TEST_START_ID"]]
    client = @cls@Client(env["INTELLIGENCE_URL"])
    answer = client.get_response({"question": task["question"]}, sample_id=task["id"])["answer"]
    results = Path(env["BENCHFLOW_RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    result = {"answer": answer, "expected": task["answer"], "correct": answer == task["answer"]}
    (results / "result.json").write_text(json.dumps(result), encoding="utf-8")
'''

_AGENT = '''"""``ReferenceAgent``: a tiny agent that solves the demo tasks, for tests and `pytest-benchflow check`."""

from __future__ import annotations

import re
from typing import Any

from pytest_benchflow import BaseAgent

__all__ = ["ReferenceAgent"]

_SUM = re.compile(r"(-?\\d+)\\s*([-+*])\\s*(-?\\d+)")


class ReferenceAgent(BaseAgent):
    """Answers "What is A op B?" with the number."""

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        found = _SUM.search(str(task_step_inputs.get("question", "")))
        if found is None:
            return "I do not know"
        a, op, b = int(found[1]), found[2], int(found[3])
        return str(a + b if op == "+" else a - b if op == "-" else a * b)
'''

_TASKS = """\
[
  {"id": "add", "question": "What is 2 + 3?", "answer": "5"},
  {"id": "subtract", "question": "What is 10 - 4?", "answer": "6"},
  {"id": "multiply", "question": "What is 6 * 7?", "answer": "42"},
  {"id": "negative", "question": "What is -3 + 1?", "answer": "-2"},
  {"id": "large", "question": "What is 123 * 45?", "answer": "5535"}
]
"""

_README = """\
# @cls@

A benchmark for [pytest-benchflow](https://github.com/benchflow-ai/benchflow): one task per question; a task
passes when the agent answers the expected text exactly.

```bash
pip install -e .
pytest --benchflow=@name@ --agent @name@.agent:ReferenceAgent      # the reference agent: every task passes
pytest --benchflow=@name@ --agent-url http://localhost:8000          # your agent
```

## Input keys

What the agent receives in each `POST /response` (the JSON object `prepare_input` returns):

| key | meaning |
| --- | --- |
| `question` | the question, as text |

The agent answers with the answer's text.

## Arguments

Given with `--benchflow-arg NAME=VALUE` (or the environment variable `NAME`):

| argument | default | meaning |
| --- | --- | --- |
| `DATA_FILE` | the demo tasks | a JSON list of `{"id", "question", "answer"}` objects (copied into the container) |

## Scoring

A task is resolved when the agent's answer, stripped of surrounding spaces, equals the expected answer. Metric:
`score` (1 or 0 per task; the summary averages it over tasks). Each task is one sample.

## Data provenance and licence

The five demo tasks in `data/tasks.json` were written for this package by `pytest-benchflow new`; they are in the
public domain. Replace them with the real data and say here where it comes from, under which licence, and how
it was processed.
"""

_README_CONTAINER = """
## Container

`pytest-benchflow build` builds the image `@image@` from `Dockerfile`, offline (the package's wheels and its
dependencies are built or downloaded on the host); `pytest --benchflow=@name@ --benchflow-runner docker …` runs
each task in it. Its entrypoint, `python -m @name@`, calls the same `evaluate` as the in-process runner.
"""

_DOCKERFILE = """\
# The image of @name@, built by `pytest-benchflow build`: its context holds wheels/ (this package's wheel,
# pytest-benchflow's, and every dependency, downloaded for the base image's Python), so nothing is fetched here.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels @dist@ \\
 && rm -rf /tmp/wheels \\
 && mkdir -p /app/results /app/logs
WORKDIR /app
ENV PYTHONUNBUFFERED=1
# The same entrance the in-process runner calls, on the container's environment (docs/protocol.md).
ENTRYPOINT ["/opt/venv/bin/python", "-m", "@name@"]
"""

_TEST = '''"""Every task of @name@ passes with the reference agent (run with `pytest tests`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_every_task_passes_with_the_reference_agent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--benchflow=@name@", "--agent=@name@.agent:ReferenceAgent",
         "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
'''
