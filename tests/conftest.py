"""Shared fixtures: real HTTP servers on loopback that answer as told."""

from __future__ import annotations

import json
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_benchflow import BaseAgent


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'"ok"'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class RawServer:
    """Answers every connection with the same raw bytes and closes it (broken HTTP, something that is not
    an agent or an engine); with ``answer`` None it accepts and never answers; with ``pace``, it sends
    the answer one byte every ``pace`` seconds (a server that trickles). On loopback TCP, or on
    the unix socket ``path``."""

    def __init__(self, answer: bytes | None, path: Path | None = None, pace: float = 0.0) -> None:
        self.answer = answer
        self.pace = pace
        self.connections: list[socket.socket] = []
        if path is None:
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        else:
            self.listener = socket.socket(socket.AF_UNIX)
            self.listener.bind(str(path))
            self.listener.listen()
            self.url = f"unix://{path}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            if self.answer is not None:
                threading.Thread(target=self._answer, args=(conn, self.answer), daemon=True).start()

    def _answer(self, conn: socket.socket, answer: bytes) -> None:
        with conn:
            try:
                conn.recv(65536)
                if not self.pace:
                    conn.sendall(answer)
                for i in range(len(answer) if self.pace else 0):
                    conn.sendall(answer[i : i + 1])
                    time.sleep(self.pace)
            except OSError:
                return  # the client gave up

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


class ScriptedServer:
    """An HTTP server whose POST replies come from a script (the last reply repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.requests: list[tuple[str, bytes, float]] = []
        self.client_ports: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append((self.path, body, time.monotonic()))
                    outer.client_ports.append(self.client_address[1])
                    outer.headers.append(dict(self.headers))
                    reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def runs_by_start(pytester: pytest.Pytester) -> list[Path]:
    """The run directories under ``.benchflow``, oldest first (two runs may start in the same second)."""
    runs = list(pytester.path.glob(".benchflow/2*"))
    return sorted(runs, key=lambda run: json.loads((run / "summary.json").read_text())["started_at"])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: For Popen of a pytest the test will interrupt: a shell that starts a job in the background
#: ignores SIGINT in it, and Python then never turns SIGINT into KeyboardInterrupt.
INTERRUPTIBLE: dict[str, Any] = {"preexec_fn": _default_sigint, "stdout": sys.stdout, "stderr": sys.stderr}


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.stop()


def json_reply(value: Any, status: int = 200, **kw: Any) -> Reply:
    return Reply(status=status, body=json.dumps(value).encode(), **kw)


class EchoAgent(BaseAgent):
    """Answers with the request's ``question`` upper-cased; ``fail`` makes call_api raise."""

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        if task_step_inputs.get("fail"):
            raise RuntimeError("agent exploded")
        if "sleep" in task_step_inputs:
            time.sleep(float(task_step_inputs["sleep"]))
        return str(task_step_inputs.get("question", "")).upper()


@pytest.fixture
def echo_agent() -> Iterator[str]:
    server = EchoAgent().serve()
    yield server.url
    server.stop()


@pytest.fixture
def free_url() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def in_process_bench(
    name: str, evaluate: str, result: str, *, tasks: tuple[str, ...] = ("t",), args: str = "None"
) -> str:
    """The source of a bench ``name`` that runs only in-process: ``evaluate(env)`` is its entrance,
    ``result`` the body of ``get_result`` (indented by four spaces); ``Client`` asks {"question": raw}."""
    return f"""
import json, logging, os
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs, BenchClient


class Client(BenchClient):
    def prepare_input(self, raw):
        return {{"question": raw}}

    def parse_response(self, raw):
        return {{"answer": raw}}

{textwrap.dedent(evaluate).strip()}


class {name}(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({args})

    def get_all_tasks(self, split):
        return {{"task_ids": {list(tasks)!r}, "error_message": None}}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
{textwrap.indent(textwrap.dedent(result).strip(), " " * 8)}
"""


TOY_BENCH = """
import json, os, time
from pathlib import Path
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs, BenchClient, report_progress


class ToyClient(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw["task"]}

    def parse_response(self, raw):
        return {"answer": raw}


def evaluate(env):
    task = env["TEST_START_ID"]
    if "boom" in task:
        raise RuntimeError("evaluation crashed on " + task)
    if "sleep" in task:
        time.sleep(float(task.split("sleep")[-1]))
    answer = ToyClient(env["INTELLIGENCE_URL"], retries=0).get_response({"task": task})["answer"]
    report_progress(env, 1, 1)
    print("evaluating with key", env.get("TOY_API_KEY"))
    Path(env["BENCHFLOW_RESULTS_DIR"], "answer.json").write_text(json.dumps({"answer": answer, "mode": env.get("MODE")}))


class ToyBench(BaseBench):
    description = "a toy benchmark for tests"

    def get_args(self, task_id):
        return BenchArgs({
            "required": json.loads(os.environ.get("TOY_REQUIRED", "[]")),
            "optional": [{"MODE": "normal"}, {"TOY_API_KEY": None}],
            "choices": {"MODE": ["normal", "loud"]},
        })

    def get_image_name(self):
        return "toy"

    def get_results_dir_in_container(self):
        return "/results"

    def get_log_files_dir_in_container(self):
        return "/logs"

    def get_all_tasks(self, split):
        tasks = json.loads(os.environ.get("TOY_TASKS", '["good", "bad", "boom"]'))
        return {"task_ids": tasks, "error_message": os.environ.get("TOY_LIST_ERROR")}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        data = json.loads(Path(self.results_dir, "answer.json").read_text())
        ok = data["answer"] == task_id.upper() and "bad" not in task_id
        return {"is_resolved": ok, "metrics": {"score": 1.0 if ok else 0.0, "mode": data["mode"]},
                "log": "agent answered " + data["answer"]}


class UpperAgent(BaseAgent):
    def call_api(self, inputs):
        return inputs["question"].upper()
"""


@pytest.fixture
def toy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding ``toy_bench.py`` (ToyBench, UpperAgent)."""
    pytester.makepyfile(toy_bench=TOY_BENCH)
    monkeypatch.syspath_prepend(pytester.path)
    for name in ("TOY_TASKS", "TOY_REQUIRED", "TOY_LIST_ERROR", "MODE", "TOY_API_KEY", "INTELLIGENCE_URL", "CI"):
        monkeypatch.delenv(name, raising=False)
    return pytester


TOY = ["--benchflow=toy_bench.py:ToyBench", "--agent=toy_bench:UpperAgent", "-p", "no:randomly"]


@pytest.fixture
def quiz(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding ``quiz_bench.py`` (QuizBench with samples, QuizAgent): see quiz.py."""
    from quiz import QUIZ, QUIZ_ENV

    pytester.makepyfile(quiz_bench=QUIZ)
    monkeypatch.syspath_prepend(pytester.path)
    for name in (*QUIZ_ENV, "INTELLIGENCE_URL", "CI"):
        monkeypatch.delenv(name, raising=False)
    return pytester


# The Docker tests' images (built once per session on the real engine) and toy project.
@pytest.fixture(scope="session")
def toy_image() -> str:
    from container_toy import TOY_DOCKERFILE, TOY_ENTRY, TOY_IMAGE
    from images import build, engine

    return build(engine(), TOY_IMAGE, {"Dockerfile": TOY_DOCKERFILE, "entry.py": TOY_ENTRY}, wheel_requirements=[])


@pytest.fixture(scope="session")
def mmlu_image() -> str:
    from images import ROOT, build, engine

    dockerfile = ROOT / "example_bench" / "mmlu_pro" / "Dockerfile"
    return build(engine(), "benchflow/mmlu-pro:0.2", {"Dockerfile": dockerfile.read_text()}, wheel_requirements=[])


@pytest.fixture
def docker_toy(pytester: pytest.Pytester, toy_image: str, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding ``docker_toy.py`` (DockerToy, a bench in the toy image; Upper, its agent)."""
    import os

    from container_toy import TOY_BENCH

    pytester.makepyfile(docker_toy=TOY_BENCH)
    monkeypatch.syspath_prepend(pytester.path)
    monkeypatch.setenv("BENCHFLOW_REQUIRE_DOCKER", os.environ.get("BENCHFLOW_REQUIRE_DOCKER", ""))
    return pytester
