"""--benchflow-cache: the same request to the same agent is answered once, across runs and xdist workers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from conftest import TOY, ScriptedServer, json_reply, runs_by_start

MMLU = ["--benchflow=mmlu_pro", "-p", "no:cacheprovider"]


def posts(server: ScriptedServer) -> int:
    return sum(1 for path, _, _ in server.requests if path == "/response")


@pytest.fixture
def answering(scripted: ScriptedServer) -> ScriptedServer:
    scripted.script(json_reply("The answer is (A)."))
    return scripted


def test_use_answers_from_the_cache_and_refresh_asks_again(
    pytester: pytest.Pytester, answering: ScriptedServer
) -> None:
    agent = f"--agent-url={answering.url}"
    first = pytester.runpytest(*MMLU, agent, "-k", "law", "--benchflow-cache=use")
    assert posts(answering) == 3 and (pytester.path / ".benchflow" / "cache.sqlite").exists()
    second = pytester.runpytest(*MMLU, agent, "-k", "law", "--benchflow-cache=use")
    assert posts(answering) == 3  # nothing asked again
    assert first.parseoutcomes() == second.parseoutcomes()
    pytester.runpytest(*MMLU, agent, "-k", "law", "--benchflow-cache=refresh")
    assert posts(answering) == 6
    pytester.runpytest(*MMLU, agent, "-k", "law")  # off by default
    assert posts(answering) == 9


def test_a_cache_shared_by_xdist_workers(pytester: pytest.Pytester, answering: ScriptedServer) -> None:
    args = [*MMLU, f"--agent-url={answering.url}", "-k", "law or history", "--benchflow-cache=use", "-n", "2"]
    first = pytester.runpytest_subprocess(*args, "--benchflow-cache-path=common/answers.sqlite")
    assert posts(answering) == 6
    first.stdout.fnmatch_lines(["  usage: 6 requests (the agent reported no token counts); cache: 0 hits, 6 misses"])
    second = pytester.runpytest_subprocess(*args, "--benchflow-cache-path=common/answers.sqlite")
    assert posts(answering) == 6
    # The summary says where the answers came from: all from the cache, none from the agent.
    second.stdout.fnmatch_lines(["  usage: 0 requests (the agent reported no token counts); cache: 6 hits, 0 misses"])
    usage = json.loads(next(p for p in runs_by_start(pytester)[-1:]).joinpath("summary.json").read_text())
    assert {k: usage["benches"]["mmlu_pro"]["usage"][k] for k in ("cache_hits", "cache_misses")} == {
        "cache_hits": 6,
        "cache_misses": 0,
    }
    db = sqlite3.connect(pytester.path / "common" / "answers.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM answers").fetchone() == (6,)


SECRET_AGENT = """
from pytest_benchflow import BaseAgent

class Leaky(BaseAgent):
    def call_api(self, inputs):
        return inputs["question"].upper() + " sk-test-cachesecret"
"""


def test_no_secret_is_stored_in_clear(toy: pytest.Pytester) -> None:
    toy.makepyfile(leaky_agent=SECRET_AGENT)
    args = ["--benchflow=toy_bench.py:ToyBench", "--agent=leaky_agent:Leaky", "-k", "good"]
    toy.runpytest(*args, "--benchflow-cache=use", "--benchflow-arg=TOY_API_KEY=sk-test-cachesecret")
    data = (toy.path / ".benchflow" / "cache.sqlite").read_bytes()
    wal = toy.path / ".benchflow" / "cache.sqlite-wal"
    data += wal.read_bytes() if wal.exists() else b""
    assert b"sk-test-cachesecret" not in data and b"GOOD" in data


def test_bad_cache_settings(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*TOY, "--benchflow-cache=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchflow-cache 'sometimes': choose off, use or refresh"])
    (toy.path / "afile").write_text("x")
    unusable = toy.runpytest(*TOY, "--benchflow-cache=use", "--benchflow-cache-path=afile/cache.sqlite")
    assert unusable.ret == pytest.ExitCode.USAGE_ERROR
    unusable.stderr.fnmatch_lines(["ERROR: --benchflow-cache: cannot use afile/cache.sqlite: *"])


SAME_INFO_AGENTS = """
from pytest_benchflow import BaseAgent

class Right(BaseAgent):
    def call_api(self, inputs):
        return inputs["question"].upper()

    def info(self):
        return {"name": "agent"}

class Wrong(Right):
    def call_api(self, inputs):
        return "no idea"
"""


def test_agents_at_different_urls_with_the_same_info_do_not_share_answers(toy: pytest.Pytester) -> None:
    # The cache key is the agent's location (URL, --agent or --agent-cmd) and its /info: an
    # always-right agent at another URL never scores another agent's cached answers.
    toy.makepyfile(same_info=SAME_INFO_AGENTS)
    from same_info import Right, Wrong  # type: ignore[import-not-found]

    args = ["--benchflow=toy_bench.py:ToyBench", "-k", "good", "--benchflow-cache=use", "-p", "no:randomly"]
    with Wrong().serve() as wrong, Right().serve() as right:
        toy.runpytest(*args, f"--agent-url={wrong.url}").assert_outcomes(failed=1)
        toy.runpytest(*args, f"--agent-url={right.url}").assert_outcomes(passed=1)
        toy.runpytest(*args, f"--agent-url={wrong.url}").assert_outcomes(failed=1)


def test_an_agent_started_by_the_session_keeps_its_cache_across_runs(toy: pytest.Pytester) -> None:
    # --agent and --agent-cmd listen on a new port each session: their identity is the flag, not the URL.
    args = [*TOY, "-k", "good", "--benchflow-cache=use"]
    toy.runpytest(*args).assert_outcomes(passed=1)
    toy.runpytest(*args).assert_outcomes(passed=1)
    lines = [
        json.loads(line)
        for t in toy.path.glob(".benchflow/*/*/logs/good/transcript.jsonl")
        for line in t.read_text().splitlines()
    ]
    assert sorted(line["cached"] for line in lines) == [False, True]


HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, body BLOB NOT NULL, stored REAL)")
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO answers VALUES ('held', x'00', 0)")
print("locked", flush=True)
time.sleep(600)
"""


# Task processes (Linux): each counts what it skipped in its own copy of the cache; the session says it all.
@pytest.mark.parametrize(
    "xdist", [[], ["-n", "2"], ["--benchflow-concurrency=2", "--benchflow-task-processes=2", "-p", "no:randomly"]]
)
def test_a_cache_locked_by_another_process_loses_no_answer(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    # Another process holds the write lock for the whole run: every answer is kept and scored, the
    # tasks pass, and the session says once that answers were not cached.
    (toy.path / ".benchflow").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, str(toy.path / ".benchflow" / "cache.sqlite")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setenv("TOY_TASKS", '["good", "fine"]')
        result = toy.runpytest_subprocess(*TOY, "--benchflow-cache=use", *xdist)
    finally:
        holder.kill()
        holder.wait()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["--benchflow-cache: * skipped (answers kept, not cached): *database is locked*"])
    (jsonl,) = toy.path.glob(".benchflow/*/results.jsonl")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(r["outcome"] for r in records) == ["passed", "passed"]
