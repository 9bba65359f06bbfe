"""The second attack pass on issue 19's code: each test is an attack that once broke a promise (or guards
one docs/security.md makes that no other test covers). Real servers on loopback, real files, real runs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import TOY, Reply, ScriptedServer, in_process_bench, json_reply
from pytest_benchflow import AgentBadResponse, AgentHTTPError, BenchClient
from pytest_benchflow.agents import OpenAIChatAgent


class QAClient(BenchClient):
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"question": raw_step_inputs}

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response}


# A date whose hour no datetime holds: parsing it overflows instead of failing as a bad date.
_OVERFLOWING_DATE = "Wed, 21 Oct 2015 99999999999999999999:28:00 GMT"


def test_a_retry_after_date_that_overflows_is_ignored(scripted: ScriptedServer) -> None:
    """Attack: an agent answers 503 with a Retry-After date that overflows; the client must back off as
    usual and report the 503, not raise OverflowError out of get_response."""
    scripted.script(Reply(status=503, headers={"Retry-After": _OVERFLOWING_DATE}))
    client = QAClient(scripted.url, retries=1, backoff=0.01)
    with pytest.raises(AgentHTTPError, match="HTTP 503 after 2 attempts"):
        client.get_response("q")


def test_openai_agent_ignores_a_retry_after_date_that_overflows(scripted: ScriptedServer) -> None:
    scripted.script(
        Reply(status=429, headers={"Retry-After": _OVERFLOWING_DATE}),
        json_reply({"choices": [{"message": {"content": "(B)"}}]}),
    )
    assert OpenAIChatAgent(base_url=scripted.url, max_retry_seconds=30).call_api({"input_text": "q"}) == "(B)"


def test_a_compressed_answer_is_capped_as_it_is_decoded(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a gzip body that declares a small Content-Length but inflates far beyond the cap (a
    decompression bomb). The cap is on what is decoded, not on what was declared."""
    monkeypatch.setenv("BENCHFLOW_MAX_RESPONSE_BYTES", str(1024 * 1024))
    bomb = gzip.compress(json.dumps("a" * (8 * 1024 * 1024)).encode())
    assert len(bomb) < 1024 * 1024
    scripted.script(Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(AgentBadResponse, match="more than 1048576 bytes"):
        QAClient(scripted.url).get_response("q")


@pytest.mark.parametrize("count", ['"many"', "1e999", "[1]", "-5", "1.5"])
def test_a_provider_usage_count_that_is_no_count_never_loses_the_answer(scripted: ScriptedServer, count: str) -> None:
    """Attack: a provider reports a token count that is not one. The answer (paid for) still reaches the
    benchmark; the usage is ignored with a note, never a 500 that makes the benchmark ask (and pay) again."""
    body = '{"choices": [{"message": {"content": "(B)"}}], "usage": {"prompt_tokens": %s, "completion_tokens": 3}}'
    scripted.script(Reply(body=(body % count).encode()))
    with OpenAIChatAgent(base_url=scripted.url, max_retry_seconds=0).serve() as server:
        response = requests.post(server.url + "/response", json={"input_text": "q"}, timeout=10)
    assert response.status_code == 200 and response.json() == "(B)"
    # The client cannot read the usage: it is ignored (and noted by the task's meter), not believed.
    from pytest_benchflow.usage import USAGE_HEADER, parse_usage

    assert parse_usage(response.headers.get(USAGE_HEADER)) is None


def test_an_info_probe_does_not_follow_a_redirect(scripted: ScriptedServer) -> None:
    """Attack: an agent redirects GET /info to a service only this machine reaches (here another loopback
    server answering a JSON object): its answer would be kept in summary.json and shown."""
    from pytest_benchflow.plugin.launch import agent_info, check_agent

    inside = ScriptedServer()
    try:
        inside.script(json_reply({"name": "host-only service", "secret": "internal"}))
        scripted.script(Reply(status=302, headers={"Location": inside.url + "/internal"}))
        info, _ = agent_info(scripted.url)
        assert info is None and not inside.requests
        assert check_agent(scripted.url) is not None and not inside.requests
    finally:
        inside.stop()


# --- Run files and readers ---------------------------------------------------------------------------------


def _finished_run(toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    toy.runpytest(*TOY).assert_outcomes(passed=1)
    (run,) = (toy.path / ".benchflow").iterdir()
    return run


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_benchflow.results.cli", *args], capture_output=True, text=True, timeout=60
    )


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("planted", ["summary", "record"])
def test_a_run_file_nested_too_deeply_is_refused_with_its_name(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """Attack: a planted summary.json (or a results.jsonl line before the last) nested 100,000 deep. The
    reader says which file is unreadable: `report` exits 2 with it, a resume is a usage error naming it,
    never an INTERNALERROR or an "unexpected RecursionError"."""
    run = _finished_run(toy, monkeypatch)
    if planted == "summary":
        (run / "summary.json").write_text(DEEP)
    else:
        lines = (run / "results.jsonl").read_text()
        (run / "results.jsonl").write_text(DEEP + "\n" + lines)
    where = "summary.json" if planted == "summary" else "results.jsonl:1"
    done = _cli("report", str(run), "-o", str(toy.path / "r.html"))
    assert done.returncode == 2 and f"{where}: not valid JSON (nested too deeply)" in done.stderr, done.stderr
    assert "unexpected" not in done.stderr
    result = toy.runpytest(*TOY, f"--benchflow-resume={run}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --benchflow-resume: *{where}: not valid JSON (nested too deeply)"])


@pytest.mark.parametrize(
    "line", ['{"done": 1e999, "total": 2}', '{"done": 1, "total": -1e999}', '{"done": 1, "total": 1%s}' % ("0" * 400)]
)
def test_a_progress_line_with_an_infinite_count_is_not_progress(line: str) -> None:
    """Attack: a container prints a progress line whose count is infinite or 400 digits long: it is not
    progress (the reader of its output, or the display's rate, raised OverflowError: nothing after the
    line was saved)."""
    from pytest_benchflow.environment import PROGRESS_PREFIX, parse_progress

    assert parse_progress(PROGRESS_PREFIX + line) is None


# --- Secrets ------------------------------------------------------------------------------------------------

ARG_SECRET = "sk-attack-9d3e7f0a1b"
URL_PASSWORD = "pw-Qx71zz"


def test_an_info_that_quotes_the_sessions_secrets_is_masked(
    pytester: pytest.Pytester, scripted: ScriptedServer
) -> None:
    """Attack: an agent's /info (and its answers) quote the password of its URL and a secret argument
    (an agent that logs its requests' environment could know it). The session knows both: neither may
    reach the terminal, summary.json, results.jsonl, the HTML report or the JUnit XML."""
    from test_secrets import LEAKY_BENCH

    pytester.makepyfile(leaky=LEAKY_BENCH)
    quoted = {"name": "spy", "model": f"{URL_PASSWORD} {ARG_SECRET}", "settings": {ARG_SECRET: [URL_PASSWORD]}}
    scripted.script(json_reply(quoted))
    url = scripted.url.replace("http://", f"http://bob:{URL_PASSWORD}@")
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky",
        f"--agent-url={url}",
        f"--benchflow-arg=LEAKY_API_KEY={ARG_SECRET}",
        "--junitxml=j.xml",
        "--benchflow-html=report.html",
        "-rA",
        "-v",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    shown = result.stdout.str() + result.stderr.str()
    assert "spy" in shown  # the /info was shown: masked, not left out
    written = {str(p): p.read_text(errors="replace") for p in pytester.path.rglob("*") if p.is_file()}
    for where, text in [("terminal", shown), *written.items()]:
        if where.endswith(("r.json", ".py")):
            continue  # the bench's own results and sources
        assert ARG_SECRET not in text and URL_PASSWORD not in text, where


QUOTED_SECRET = "pa'ss\"w0rd-\x7fZ"
REPR_BENCH = in_process_bench(
    "Quoting",
    """
    def evaluate(env):
        raise KeyError(env["QUOTING_PASSWORD"])  # Python shows a KeyError's argument by its repr
    """,
    'return {"is_resolved": True}',
    args='{"required": ["QUOTING_PASSWORD"]}',
)


def test_a_secret_in_its_python_repr_spelling_is_masked(pytester: pytest.Pytester, echo_agent: str) -> None:
    """Attack: a secret holding both quotes and a control character, raised in a KeyError: Python spells it
    with ``\\'`` and ``\\x7f`` (its repr), which no JSON, URL or HTML form matches."""
    pytester.makepyfile(quoting=REPR_BENCH)
    result = pytester.runpytest(
        "--benchflow=quoting.py:Quoting",
        f"--agent-url={echo_agent}",
        f"--benchflow-arg=QUOTING_PASSWORD={QUOTED_SECRET}",
        "--junitxml=j.xml",
        "-rA",
    )
    result.assert_outcomes(errors=1)
    shown = result.stdout.str() + result.stderr.str()
    assert "KeyError" in shown
    written = {str(p): p.read_text(errors="replace") for p in pytester.path.rglob("*") if p.is_file()}
    for where, text in [("terminal", shown), *written.items()]:
        if not where.endswith(".py"):
            assert "w0rd" not in text, where  # a part of the secret common to all its spellings


@pytest.mark.parametrize("seconds", ["1e300", "1e12"])
def test_a_task_time_limit_too_long_to_wait_is_a_usage_error(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    """Attack (a user's typo): a time limit longer than any wait a lock or socket can express made every
    task error with OverflowError. It is one usage error naming the option."""
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    result = toy.runpytest(*TOY, f"--benchflow-timeout={seconds}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --benchflow-timeout {seconds}: at most 100000000 (*)"])


@pytest.mark.parametrize("variable", ["BENCHFLOW_READ_TIMEOUT", "BENCHFLOW_AGENT_IDLE_TIMEOUT"])
def test_a_seconds_setting_too_long_to_wait_is_named(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """Attack (a user's typo): BENCHFLOW_READ_TIMEOUT=1e12 made each request raise a bare OverflowError, and
    BENCHFLOW_AGENT_IDLE_TIMEOUT=1e12 made the agent server drop every connection unanswered."""
    from conftest import EchoAgent

    monkeypatch.setenv(variable, "1e12")
    with pytest.raises(ValueError, match=f"{variable}='1e12' must be a finite number >= .* and <= 1e\\+08"):
        if variable == "BENCHFLOW_READ_TIMEOUT":
            QAClient("http://127.0.0.1:9").get_response("q")
        else:
            EchoAgent().serve().stop()


def test_a_resume_counts_no_planted_record_of_an_epoch_the_run_does_not_have(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: results.jsonl gains copies of a task's record for epochs -1, 0 and 2 to 5 of a one-epoch run
    (tampered, or hand-merged from another run). A resume must not count them: it said "1 task × 6 epochs"."""
    run = _finished_run(toy, monkeypatch)
    (line,) = (run / "results.jsonl").read_text().splitlines()
    planted = [json.dumps({**json.loads(line), "epoch": epoch}) for epoch in (-1, 0, 2, 3, 4, 5)]
    (run / "results.jsonl").write_text("\n".join([line, *planted]) + "\n")
    result = toy.runpytest(*TOY, f"--benchflow-resume={run}")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), result.stderr.str()
    result.stdout.fnmatch_lines(["ToyBench (test): 1 task, 1 resolved, 0 failed, 0 errors*"])


# --- The response cache -------------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["garbage", "fifo", "directory"])
def test_a_cache_file_that_is_no_database_is_a_usage_error_and_kept(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """Attack: in place of cache.sqlite, bytes that are no database, a FIFO (SQLite would read it for ever),
    or a directory. The session stops at once with a usage error naming the file and saying what it is (SQLite
    said "disk I/O error" for the FIFO), and leaves the file as it was."""
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    cache = toy.path / ".benchflow" / "cache.sqlite"
    cache.parent.mkdir()
    garbage = b"not a database, but someone's notes\n" * 200
    if planted == "garbage":
        cache.write_bytes(garbage)
    elif planted == "fifo":
        os.mkfifo(cache)
    else:
        cache.mkdir()
    result = toy.runpytest_subprocess(*TOY, "--benchflow-cache=use", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    if planted == "garbage":
        result.stderr.fnmatch_lines(["ERROR: --benchflow-cache: cannot use */cache.sqlite: file is not a database; *"])
        assert cache.read_bytes() == garbage
    else:  # SQLite said "disk I/O error" (a FIFO) or "unable to open database file" (a directory)
        result.stderr.fnmatch_lines(["ERROR: --benchflow-cache: */cache.sqlite is not a regular file; *"])


def test_a_corrupted_cached_answer_is_asked_again_not_blamed_on_the_agent(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a stored answer is replaced by bytes that are no JSON (a corrupted or tampered cache). The cache
    is best effort: the task asks the agent again and passes, instead of erroring with "the agent answered a
    body that is not JSON"."""
    import sqlite3

    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    toy.runpytest(*TOY, "--benchflow-cache=use").assert_outcomes(passed=1)
    with sqlite3.connect(toy.path / ".benchflow" / "cache.sqlite") as db:
        assert db.execute("UPDATE answers SET body = ?", (b"\x00garbage{",)).rowcount == 1
    result = toy.runpytest(*TOY, "--benchflow-cache=use")
    result.assert_outcomes(passed=1)
    with sqlite3.connect(toy.path / ".benchflow" / "cache.sqlite") as db:
        assert db.execute("SELECT body FROM answers").fetchall() == [(b'"GOOD"',)]  # the agent's answer replaced it


# --- The terminal -------------------------------------------------------------------------------------------

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # sets the terminal's clipboard
ASKING_BENCH = in_process_bench(
    "Asking",
    """
    def evaluate(env):
        Client(env["INTELLIGENCE_URL"], retries=0).get_response("q")
    """,
    'return {"is_resolved": True}',
)


@pytest.mark.parametrize("status", [400, 200])
def test_an_agents_error_body_reaches_the_terminal_printable(
    pytester: pytest.Pytester, scripted: ScriptedServer, status: int
) -> None:
    """Attack: an agent answers (400, or 200 with no JSON) a body holding a terminal escape sequence (OSC 52
    writes the clipboard). The task errors quoting the body; the quote shows the escape as ``?``, as /info is."""
    pytester.makepyfile(asking=ASKING_BENCH)
    # GET /health, GET /info, then every POST /response
    scripted.script(Reply(), Reply(status=404), Reply(status=status, body=f"nope {OSC52} nope".encode()))
    result = pytester.runpytest_subprocess("--benchflow=asking.py:Asking", f"--agent-url={scripted.url}", "-rA")
    result.assert_outcomes(errors=1)
    shown = result.stdout.str() + result.stderr.str()
    assert "nope" in shown and "\x1b" not in shown and "\x07" not in shown


def test_the_last_lines_of_a_containers_output_are_quoted_printable(tmp_path: Path) -> None:
    """Attack: a container prints an escape sequence and exits 1; its last lines go into the task's error,
    shown in the terminal. They are quoted with the escape as ``?``."""
    from pytest_benchflow.runners.logs import tail

    (tmp_path / "container.stderr.log").write_bytes(f"fatal {OSC52} here\n".encode())
    quoted = tail(tmp_path / "container.stderr.log")
    assert "\nfatal ?]52;c;cm0gLXJmIH4=? here" in quoted
    assert all(line.isprintable() for line in quoted.split("\n"))


@pytest.mark.parametrize("shape", ["a-", "://a-", "x.y+"])
def test_masking_an_answer_takes_time_linear_in_its_size(shape: str) -> None:
    """Attack: an answer of 1 MB shaped so that a regular expression with a rescanned prefix goes quadratic
    ("a-a-a-…": every letter is a word boundary where a URL scheme could start). Masking it took half an hour
    (80 KB: 10 s), in the controller, past any --benchflow-timeout. Linear masking takes milliseconds: the
    bound is generous for a loaded machine and far below what quadratic work needs."""
    # In a process of its own: a regular expression holds the GIL, so no thread could stop it at the bound.
    code = (
        "from pytest_benchflow.redaction import redact\n"
        f"text = {shape!r} * (1024 * 1024 // {len(shape)}) + ' http://u:pw@h'\n"
        "print(redact(text, ['sekrit-value'])[-20:])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip().endswith(" http://***@h"), done.stderr


# --- The agent server ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "identity", "gzip, chunked"])
def test_any_transfer_encoding_beside_a_content_length_is_400(echo_agent: str, coding: str) -> None:
    """Attack: ``Transfer-Encoding: gzip`` (or identity) with a Content-Length: which frames the body is what
    request smuggling plays on. Only "chunked" was refused; the others were answered 200, framed by the length."""
    from test_agent_server import raw_exchange

    request = f"POST /response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\nContent-Length: 2\r\n\r\n{{}}"
    answer = raw_exchange(echo_agent, request.encode())
    assert answer.startswith(b"HTTP/1.1 400") and b"transfer encoding is not supported" in answer


# --- Answers that are valid JSON but no valid text -------------------------------------------------------------

SURROGATE_BENCH = in_process_bench(
    "Lonely",
    """
    def evaluate(env):
        answer = Client(env["INTELLIGENCE_URL"], retries=0).get_response("q", sample_id="s1")["answer"]
        Path(env["BENCHFLOW_RESULTS_DIR"], "answer.txt").write_text(answer.encode("utf-8", "replace").decode())
        from pytest_benchflow import BenchClient
    """,
    """
    answer = Path(self.results_dir, "answer.txt").read_text()
    return {"is_resolved": True, "metrics": {"answer": answer}, "log": "answered " + answer}
    """,
)


def test_an_answer_holding_a_lone_surrogate_is_kept_and_reported(
    pytester: pytest.Pytester, scripted: ScriptedServer
) -> None:
    """Attack: an agent answers ``"ok\\ud800"``, valid JSON whose string no UTF-8 file can hold. The task, its
    transcript, results.jsonl and the HTML report are written anyway (the character replaced), never a
    UnicodeEncodeError that loses the answer or the report."""
    pytester.makepyfile(lonely=SURROGATE_BENCH)
    scripted.script(Reply(), Reply(status=404), Reply(body=b'"ok\\ud800 done"'))
    result = pytester.runpytest_subprocess(
        "--benchflow=lonely.py:Lonely", f"--agent-url={scripted.url}", "--benchflow-html=r.html", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1)
    (run,) = pytester.path.glob(".benchflow/2*")
    (transcript,) = run.glob("Lonely/logs/*/transcript.jsonl")
    assert "done" in transcript.read_text() and "done" in (pytester.path / "r.html").read_text()


def test_a_command_line_byte_that_is_no_utf8_never_costs_the_summary(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack (a user's Latin-1 shell): an argument holding the byte 0xE9, which Python's argv holds as the lone
    surrogate U+DCE9. summary.json records the arguments and argv: it must still be written."""
    monkeypatch.setenv("TOY_TASKS", json.dumps(["good"]))
    result = toy.runpytest_subprocess(
        *TOY, "--benchflow-arg=TOY_API_KEY=caf\udce9-key-value", "--benchflow-html=r.html"
    )
    result.assert_outcomes(passed=1)
    (summary,) = toy.path.glob(".benchflow/2*/summary.json")
    assert json.loads(summary.read_text())["exit_status"] == 0
    assert "-key-value" not in summary.read_text() + (toy.path / "r.html").read_text()  # still a secret: masked
