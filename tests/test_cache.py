"""--benchflow-cache: the same request to the same agent is answered once, across runs and xdist workers."""

from __future__ import annotations

import json
import sqlite3

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
