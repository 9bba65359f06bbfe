"""Secret values never leave the process in clear: one test per boundary a string crosses."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import in_process_bench
from pytest_benchflow.agents import OpenAIChatAgent
from pytest_benchflow.redaction import redact_data, redact_files

SECRET = "sk-test-4f1c9e2b7a"
LEAKY_BENCH = in_process_bench(
    "Leaky",
    """
    log = logging.getLogger("leaky")


    def evaluate(env):
        key, url = env["LEAKY_API_KEY"], env["INTELLIGENCE_URL"]
        log.warning("calling %s with key %s", url, key)
        try:
            raise RuntimeError("auth failed for " + key)
        except RuntimeError:
            log.exception("handled")
        Client(url).get_response("q")
        Path(env["BENCHFLOW_LOG_DIR"], "trace.txt").write_text(f"key={key} url={url}\\n")
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps({"key": key, "url": url}))
    """,
    """
    data = json.loads(Path(self.results_dir, "r.json").read_text())
    return {
        "is_resolved": False,
        "metrics": {"echo": "used " + data["key"], "score": 0.5},
        "other": {"request": {"headers": {"Authorization": "Bearer " + data["key"]}}, data["key"]: 1},
        "log": "called " + data["url"],
    }
    """,
    args='{"required": ["LEAKY_API_KEY"]}',
)


@pytest.fixture
def leaky(pytester: pytest.Pytester, echo_agent: str) -> tuple[pytest.Pytester, str]:
    pytester.makepyfile(leaky=LEAKY_BENCH)
    url = echo_agent.replace("http://", "http://alice:pw-Zq81xx@")
    return pytester, url


def texts(root: Path) -> dict[str, str]:
    return {str(p): p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and ".py" not in p.suffix}


def assert_no_secret(shown: str, root: Path) -> None:
    """Neither the key nor the agent URL's password in ``shown`` (the terminal) or in a file under ``root``,
    but the bench's own results (get_result must read what it wrote)."""
    for where, text in [("terminal", shown), *texts(root).items()]:
        if not where.endswith("r.json"):
            assert SECRET not in text, where
            assert "pw-Zq81xx" not in text, where


def test_no_boundary_lets_a_secret_through(leaky: tuple[pytest.Pytester, str]) -> None:
    pytester, url = leaky
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky",
        f"--agent-url={url}",
        f"--benchflow-arg=LEAKY_API_KEY={SECRET}",
        "--log-cli-level=INFO",
        "--log-file=pytest.log",
        "--junitxml=j.xml",
        "--benchflow-html=report.html",
        "-rA",
    )
    result.assert_outcomes(failed=1)
    shown = result.stdout.str() + result.stderr.str()
    assert "calling http://alice:***@127.0.0.1" in shown or "calling http://***@127.0.0.1" in shown  # live logging ran
    files = texts(pytester.path)
    assert any(name.endswith("trace.txt") for name in files) and any(name.endswith("pytest.log") for name in files)
    assert_no_secret(shown, pytester.path)
    (record,) = [
        json.loads(line) for line in next(pytester.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()
    ]
    assert record["metrics"]["echo"] == "used ***"
    assert record["other"] == {"request": {"headers": {"Authorization": "Bearer ***"}}, "***": 1}
    assert "key=*** url=http://" in next(pytester.path.glob(".benchflow/*/Leaky/logs/t/trace.txt")).read_text()


def test_secrets_under_xdist(leaky: tuple[pytest.Pytester, str]) -> None:
    pytester, url = leaky
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky", f"--agent-url={url}", f"--benchflow-arg=LEAKY_API_KEY={SECRET}", "-n", "2", "-rA"
    )
    result.assert_outcomes(failed=1)
    assert_no_secret(result.stdout.str(), pytester.path / ".benchflow")


def test_redact_data_masks_keys_values_and_nested_lists() -> None:
    data = {"a": [SECRET, {"k": f"x{SECRET}y"}], SECRET: 1.5, "n": None}
    assert redact_data(data, [SECRET]) == {"a": ["***", {"k": "x***y"}], "***": 1.5, "n": None}


def test_non_finite_metrics_become_null_with_a_note(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(
        nan_bench=LEAKY_BENCH.replace('"score": 0.5', '"score": float("nan"), "big": float("inf")').replace(
            '{"required": ["LEAKY_API_KEY"]}', '{"optional": {"LEAKY_API_KEY": "not-secret-value"}}'
        )
    )
    result = pytester.runpytest("--benchflow=nan_bench.py:Leaky", f"--agent-url={echo_agent}")
    result.assert_outcomes(failed=1)
    run_dir = next(pytester.path.glob(".benchflow/*"))
    line = (run_dir / "results.jsonl").read_text()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert record["metrics"]["score"] is None and record["metrics"]["big"] is None
    assert record["notes"] == ["metrics.score was nan, stored as null", "metrics.big was inf, stored as null"]
    json.loads((run_dir / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"constant {c}"))


OPENAI_KEY = "sk-proj-Qx7Lm2Rt9Vb4"


class QuotingProvider:
    """A chat-completions provider on loopback that quotes the request's key back: as a 200 error object
    when the question says "error", else in the answer's content."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Authorization"].removeprefix("Bearer ")
                if "error" in body["messages"][-1]["content"]:
                    payload: dict[str, Any] = {"error": {"message": f"Incorrect API key provided: {key}"}}
                else:
                    payload = {"choices": [{"message": {"content": f"your key is {key}"}}]}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def quoting_provider() -> Iterator[QuotingProvider]:
    provider = QuotingProvider()
    yield provider
    provider.server.shutdown()


ASKING_BENCH = in_process_bench(
    "Asking",
    """
    class Asker(Client):
        def prepare_input(self, raw):
            return {"input_text": raw}


    def evaluate(env):
        answer = Asker(env["INTELLIGENCE_URL"], retries=0).get_response(env["TEST_START_ID"])["answer"]
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps(answer))
    """,
    """
    answer = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": False, "metrics": {"answer": answer}, "log": "answered " + answer}
    """,
    tasks=("error", "echo"),
)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_the_openai_key_never_leaves_whatever_the_provider_quotes(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    quoting_provider: QuotingProvider,
    workers: list[str],
) -> None:
    # A provider answering 200 with an error object that quotes the key (task "error"), or quoting it
    # in the answer itself (task "echo"): the key shows nowhere, in any of the five boundaries or any file.
    pytester.makepyfile(asking=ASKING_BENCH)
    monkeypatch.setenv("OPENAI_BASE_URL", quoting_provider.url)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    result = pytester.runpytest_subprocess(
        "--benchflow=asking.py:Asking",
        "--agent=pytest_benchflow.agents:OpenAIChatAgent",
        "--junitxml=j.xml",
        "--benchflow-html=report.html",
        "-rA",
        *workers,
    )
    result.assert_outcomes(failed=1, errors=1)  # the agent's 500 is an error, the wrong answer a failure
    shown = result.stdout.str() + result.stderr.str()
    assert "Incorrect API key provided: ***" in shown and "your key is ***" in shown
    files = texts(pytester.path)
    boundaries = ("results.jsonl", "transcript.jsonl", "report.html", "j.xml")
    assert all(any(name.endswith(b) for name in files) for b in boundaries), sorted(files)
    for where, text in [("terminal", shown), *files.items()]:
        if not where.endswith("r.json"):  # the bench's own results: get_result reads what it wrote
            assert OPENAI_KEY not in text, where


def test_openai_agent_masks_its_key_in_every_error(quoting_provider: QuotingProvider) -> None:
    agent = OpenAIChatAgent(base_url=quoting_provider.url, api_key=OPENAI_KEY)
    with pytest.raises(RuntimeError, match=r"without choices\[0\]\.message\.content: .*provided: \*\*\*") as info:
        agent.call_api({"input_text": "error"})
    assert OPENAI_KEY not in str(info.value)
    # Served, the agent's 500 says the same, masked before it leaves the agent's process.
    with agent.serve() as server:
        answer = requests.post(server.url + "/response", json={"input_text": "error"}, timeout=30)
    assert answer.status_code == 500 and "provided: ***" in answer.text and OPENAI_KEY not in answer.text
    assert OPENAI_KEY in agent.secret_values()


SPELLING_BENCH = (
    in_process_bench(
        "Spelling",
        """
    from urllib.parse import quote


    def evaluate(env):
        key = env["SPELL_API_KEY"]
        answer = Client(env["INTELLIGENCE_URL"], retries=0).get_response(key, sample_id="s-" + key)["answer"]
        Path(env["BENCHFLOW_LOG_DIR"], "trace.txt").write_text(f"url={quote(key)} json={json.dumps(key)}\\n")
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps([key, answer]))
    """,
        """
    key, answer = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": True, "metrics": {}, "samples": [{"sample_id": "q-" + key, "score": 1, "metadata": {"answer": answer}}]}
    """,
        args='{"required": ["SPELL_API_KEY"]}',
    )
    + """

from pytest_benchflow import BaseAgent


class Parrot(BaseAgent):
    def call_api(self, inputs):
        return "you said " + inputs["question"]
"""
)


def run_spelling(pytester: pytest.Pytester, secret: str, *more: str) -> pytest.RunResult:
    pytester.makepyfile(spelling=SPELLING_BENCH)
    result = pytester.runpytest_subprocess(
        "--benchflow=spelling.py:Spelling",
        "--agent=spelling.py:Parrot",
        f"--benchflow-arg=SPELL_API_KEY={secret}",
        "--benchflow-html=report.html",
        *more,
    )
    result.assert_outcomes(passed=1)
    return result


def test_secrets_with_quotes_backslashes_and_accents_are_masked_in_every_spelling(pytester: pytest.Pytester) -> None:
    # The key is written raw, JSON-escaped (with and without \\u escapes, and twice: an answer body inside
    # a transcript line), URL-encoded and HTML-escaped: no spelling of it stays in any file.
    secret = 'pa"ss\\wörd-Zk93q'
    result = run_spelling(pytester, secret, "--benchflow-cache=use")
    (run,) = pytester.path.glob(".benchflow/2*")
    files = {
        "cache.sqlite": b"".join(p.read_bytes() for p in pytester.path.glob(".benchflow/cache.sqlite*")),
        "transcript.jsonl": next(run.glob("Spelling/logs/t/transcript.jsonl")).read_bytes(),
        "report.html": (pytester.path / "report.html").read_bytes(),
        "trace.txt": next(run.glob("Spelling/logs/t/trace.txt")).read_bytes(),
    }
    with sqlite3.connect(pytester.path / ".benchflow" / "cache.sqlite") as db:
        (answer,) = [bytes(body) for (body,) in db.execute("SELECT body FROM answers")]
    assert answer == b'"you said ***"'
    assert json.loads(files["transcript.jsonl"])["request"]["question"] == "***"
    assert files["trace.txt"] == b'url=*** json="***"\n'
    for where, data in [("terminal", (result.stdout.str() + result.stderr.str()).encode()), *files.items()]:
        assert b"Zk93q" not in data, where


def test_a_secret_in_a_sample_id_is_masked(pytester: pytest.Pytester) -> None:
    run_spelling(pytester, "sk-sample-77c1e")
    (run,) = pytester.path.glob(".benchflow/2*")
    (sample,) = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert sample["sample_id"] == "q-***"
    for where in (run / "samples.jsonl", pytester.path / "report.html", next(run.glob("Spelling/logs/t/*.jsonl"))):
        assert "sk-sample-77c1e" not in where.read_text(), where


def test_redact_files_masks_a_value_across_every_chunk_boundary(tmp_path: Path) -> None:
    # In a streaming pass, a value (or one of its spellings) may start in one chunk and end in the next.
    secret = 'k"ey-Zk93q'
    escaped = json.dumps(secret)[1:-1].encode()
    for chunk in (1, 2, 5, 8, 13):
        for offset in range(chunk + 1):
            path = tmp_path / f"log-{chunk}-{offset}"
            data = b"." * offset + secret.encode() + b"|" + escaped + b"|" * offset + secret.encode()
            path.write_bytes(data)
            redact_files(tmp_path, [secret], chunk_size=chunk)
            assert path.read_bytes() == b"." * offset + b"***|***" + b"|" * offset + b"***", (chunk, offset)


def test_redact_files_leaves_files_without_secrets_and_links_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("sk-outside-1234")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "link").symlink_to(outside)
    clean = tmp_path / "logs" / "clean.txt"
    clean.write_text("nothing here")
    before = clean.stat().st_mtime_ns
    redact_files(tmp_path / "logs", ["sk-outside-1234"])
    assert outside.read_text() == "sk-outside-1234" and clean.stat().st_mtime_ns == before


BIG_LOG_BENCH = in_process_bench(
    "BigLog",
    """
    def evaluate(env):
        key, mib = env["BIG_API_KEY"].encode(), 1024 * 1024
        with open(Path(env["BENCHFLOW_LOG_DIR"], "huge.log"), "wb") as f:
            f.write(b"start " + key + b"\\n")
            # 66 MiB (files over 64 MiB used to be skipped), the key again across the 66th MiB's boundary.
            dots = 66 * mib - f.tell() - 5
            for _ in range(dots // mib):
                f.write(b"." * mib)
            f.write(b"." * (dots % mib) + key + b" end\\n")
    """,
    """
    return {"is_resolved": True, "metrics": {}}
    """,
    args='{"required": ["BIG_API_KEY"]}',
)


def test_a_log_file_over_64_mib_is_masked_in_a_streaming_pass(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(biglog=BIG_LOG_BENCH)
    key = "sk-big-5e1f0a"
    result = pytester.runpytest_subprocess(
        "--benchflow=biglog.py:BigLog", f"--agent-url={echo_agent}", f"--benchflow-arg=BIG_API_KEY={key}"
    )
    result.assert_outcomes(passed=1)
    (log,) = pytester.path.glob(".benchflow/2*/BigLog/logs/t/huge.log")
    data = log.read_bytes()
    dots = 66 * 1024 * 1024 - len(f"start {key}\n") - 5
    assert data == b"start ***\n" + b"." * dots + b"*** end\n"


class InfoAgent:
    """An agent on loopback whose ``GET /info`` answers ``info`` and ``POST /response`` ``answer`` (raw bytes)."""

    def __init__(self, info: bytes, answer: bytes = b'"ok"') -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # unread, it could reset the answer
                body = {"/info": info, "/response": answer}.get(self.path, b'{"status": "ok"}')
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


QUIET_BENCH = in_process_bench(
    "Quiet",
    """
    def evaluate(env):
        pass
    """,
    """
    return {"is_resolved": True, "metrics": {}}
    """,
    args='{"optional": {"QUIET_API_KEY": "sk-quiet-31f0"}}',  # a secret: /info goes through the redaction walk
)


def wrapped(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def nested(depth: int) -> bytes:
    return b'{"name": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "shown", "kept"),
    [
        (nested(500), "agent: http://127.0.0.1:*: deep", {"name": "deep", "x": wrapped("(cut: nested too deeply)", 8)}),
        (nested(100_000), "agent: http://127.0.0.1:*", None),
        (
            json.dumps({"name": "evil\x1b]52;c;ZXZpbA==\x07", "model": "m\x1b[2J\n"}).encode(),
            "agent: http://127.0.0.1:*: evil?]52;c;ZXZpbA==? (model m?[2J?)",
            {"name": "evil?]52;c;ZXZpbA==?", "model": "m?[2J?"},
        ),
        (
            json.dumps({"name": "big", "model": "m", "blob": ["x" * 1000] * 40}).encode(),
            "agent: http://127.0.0.1:*: big (model m)",
            {"name": "big", "model": "m", "cut": "/info is over 16384 bytes: only its name and model are kept"},
        ),
        # Over the 64 KiB read on the wire: not kept at all, and the session says so.
        (
            json.dumps({"name": "big", "model": "m", "blob": ["x" * 1000] * 50_000}).encode(),
            "*answered GET /info with more than 65536 bytes: its info is not kept*",
            None,
        ),
    ],
    ids=["500-deep", "100000-deep", "escape-codes", "40-KB", "50-MB"],
)
def test_agent_info_is_kept_bounded_and_shown_printable(
    pytester: pytest.Pytester, body: bytes, shown: str, kept: dict[str, Any] | None
) -> None:
    agent = InfoAgent(body)
    try:
        pytester.makepyfile(quiet=QUIET_BENCH)
        result = pytester.runpytest_subprocess("--benchflow=quiet.py:Quiet", f"--agent-url={agent.url}")
    finally:
        agent.server.shutdown()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([shown])
    assert "\x1b" not in result.stdout.str() + result.stderr.str()
    (summary,) = pytester.path.glob(".benchflow/2*/summary.json")
    assert summary.stat().st_size < 64 * 1024
    assert json.loads(summary.read_text())["agent"]["info"] == kept


def test_redact_data_walks_any_depth_without_recursion() -> None:
    deep: Any = SECRET
    for _ in range(100_000):
        deep = {"k": [deep]}
    cut = redact_data(deep, [SECRET])
    for _ in range(32):  # 64 levels below the top are kept (a dict and a list per step), the rest is a note
        cut = cut["k"][0]
    assert cut == {"k": "(cut: nested too deeply)"}
    assert redact_data(wrapped({SECRET: (SECRET, 1)}, 10), [SECRET]) == wrapped({"***": ["***", 1]}, 10)


DEEP_BENCH = in_process_bench(
    "Deep",
    """
    class JsonClient(Client):
        expects_text = False


    def evaluate(env):
        raw = JsonClient(env["INTELLIGENCE_URL"], retries=0).get_response("q", sample_id="s1")["answer"]
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps(raw))
    """,
    """
    raw = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": True, "metrics": {}, "other": {"answer": raw},
            "samples": [{"sample_id": "s1", "score": 1, "metadata": {"answer": raw}}]}
    """,
)


@pytest.mark.parametrize("depth", [800, 100_000])
def test_an_answer_nested_deeply_never_crashes_the_session_or_the_report(pytester: pytest.Pytester, depth: int) -> None:
    # The agent's JSON is walked by the client, the transcript, the records and the HTML report.
    agent = InfoAgent(b"{}", answer=nested(depth))
    try:
        pytester.makepyfile(deep=DEEP_BENCH)
        result = pytester.runpytest_subprocess(
            "--benchflow=deep.py:Deep", f"--agent-url={agent.url}", "--benchflow-html=report.html"
        )
    finally:
        agent.server.shutdown()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    if depth < 1000:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*answered JSON nested too deeply to read*"])
    assert (pytester.path / "report.html").is_file()
    (run,) = pytester.path.glob(".benchflow/2*")
    for line in (run / "results.jsonl").read_text().splitlines():
        json.loads(line)


def test_a_transcript_keeps_an_answer_nested_too_deeply_to_write_cut(tmp_path: Path) -> None:
    from pytest_benchflow.transcript import Transcript

    transcript = Transcript(tmp_path / "transcript.jsonl")
    transcript.record(
        sample_id="s",
        request={"q": 1},
        response=wrapped("x", 100_000),
        parsed=None,
        latency=0.1,
        attempts=1,
        usage=None,
        cached=False,
        error=None,
    )
    transcript.close()
    (entry,) = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    assert entry["sample_id"] == "s" and entry["response"] == wrapped("(cut: nested too deeply)", 64)


BIG_TRANSCRIPT_IMAGE = "benchflow-test/big-transcript:1"
BIG_TRANSCRIPT_FILES = {
    "Dockerfile": """
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY entry.py /app/entry.py
RUN mkdir -p /app/results /app/logs && chmod 1777 /app/results /app/logs
ENTRYPOINT ["python3", "/app/entry.py"]
""",
    # 80 MB of transcript lines, each quoting the key (as a bench forwarding a credential would).
    "entry.py": """
import json, os
line = json.dumps({"request": {"auth": os.environ["BIG_API_KEY"]}, "response": "." * 1000}) + "\\n"
with open("/app/logs/transcript.jsonl", "w") as f:
    for _ in range(80 * 1000 * 1000 // len(line) + 1):
        f.write(line)
open("/app/results/done", "w").write("ok")
""",
}
BIG_TRANSCRIPT_BENCH = f"""
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs


class BigTranscript(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({{"required": ["BIG_API_KEY"]}})

    def get_image_name(self):
        return {BIG_TRANSCRIPT_IMAGE!r}

    def get_results_dir_in_container(self):
        return "/app/results"

    def get_log_files_dir_in_container(self):
        return "/app/logs"

    def get_all_tasks(self, split):
        return {{"task_ids": ["t"], "error_message": None}}

    def get_result(self, task_id):
        return {{"is_resolved": True, "metrics": {{}}}}


class Quiet(BaseAgent):
    def call_api(self, inputs):
        return "ok"
"""


@pytest.mark.docker
def test_an_80_mb_container_transcript_is_masked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from images import build, engine

    build(engine(), BIG_TRANSCRIPT_IMAGE, BIG_TRANSCRIPT_FILES)
    pytester.makepyfile(big_transcript=BIG_TRANSCRIPT_BENCH)
    monkeypatch.syspath_prepend(pytester.path)
    key = "sk-container-9d2e4b"
    result = pytester.runpytest_subprocess(
        "--benchflow=big_transcript.py:BigTranscript",
        "--agent=big_transcript:Quiet",
        f"--benchflow-arg=BIG_API_KEY={key}",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=1)
    (transcript,) = pytester.path.glob(".benchflow/2*/BigTranscript/logs/t/transcript.jsonl")
    assert transcript.stat().st_size > 64 * 1024 * 1024
    with open(transcript, encoding="utf-8") as lines:
        for line in lines:
            assert key not in line and json.loads(line)["request"]["auth"] == "***"
