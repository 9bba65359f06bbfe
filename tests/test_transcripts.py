"""Transcripts: every exchange a client makes is in its task's transcript.jsonl, with sample ids, masked, opt-out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from quiz import QUIZ_ARGS

from conftest import Reply, ScriptedServer
from pytest_benchflow import BenchClient


def transcripts(pytester: pytest.Pytester) -> dict[str, list[dict[str, Any]]]:
    (run,) = pytester.path.glob(".benchflow/2*")
    found = {}
    for path in run.glob("*/logs/*/transcript.jsonl"):
        found[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return found


def test_every_exchange_is_recorded_with_its_sample_id(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIZ_WRONG", "t1q2")
    quiz.runpytest_subprocess(*QUIZ_ARGS, "-n", "2").assert_outcomes(passed=4)
    found = transcripts(quiz)
    assert sorted(found) == ["t0", "t1", "t2", "t3"]
    for task, lines in found.items():
        assert sorted(line["sample_id"] for line in lines) == [f"{task}q{i}" for i in range(5)]
        for line in lines:
            assert line["request"] == {"question": line["sample_id"]}
            assert line["parsed"] == {"answer": line["response"]}
            assert line["attempts"] == 1 and line["latency"] > 0 and line["error"] is None and not line["cached"]
    (wrong,) = [line for line in found["t1"] if line["sample_id"] == "t1q2"]
    assert wrong["response"] == "wrong"


def test_transcripts_can_be_switched_off(quiz: pytest.Pytester) -> None:
    quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-transcripts=off").assert_outcomes(passed=4)
    assert transcripts(quiz) == {}
    result = quiz.runpytest_subprocess(*QUIZ_ARGS, "--benchflow-transcripts=maybe")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--benchflow-transcripts 'maybe': choose on or off*"])


def test_no_secret_reaches_a_transcript(quiz: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench forwards a credential in its requests, and the agent URL carries a password.
    monkeypatch.setenv("QUIZ_API_KEY", "sk-quiz-4a7c9e")
    monkeypatch.setenv("QUIZ_SEND_TOKEN", "sk-quiz-4a7c9e")
    sys.path.insert(0, str(quiz.path))
    try:
        from quiz_bench import QuizAgent  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(quiz.path))
    server = QuizAgent().serve()
    try:
        url = server.url.replace("http://", "http://user:pw-f00d1e@")
        quiz.runpytest_subprocess("--benchflow=quiz_bench.py:QuizBench", f"--agent-url={url}").assert_outcomes(passed=4)
    finally:
        server.stop()
    (run,) = quiz.path.glob(".benchflow/2*")
    texts = [p.read_text() for p in run.glob("*/logs/*/transcript.jsonl")]
    assert len(texts) == 4
    for text in texts:
        assert "sk-quiz-4a7c9e" not in text and "pw-f00d1e" not in text
        assert all(json.loads(line)["request"]["auth"] == "***" for line in text.splitlines())


def test_failed_exchanges_are_recorded_with_their_error_and_attempts(
    scripted: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_benchflow.transcript import Transcript

    monkeypatch.setenv("BENCHFLOW_BACKOFF", "0.01")
    scripted.script(Reply(status=500, body=b"overloaded"), Reply(status=500, body=b"overloaded"), Reply(body=b'"B"'))

    class Client(BenchClient):
        def prepare_input(self, raw: dict[str, Any]) -> dict[str, Any]:
            return {"question": raw["q"]}

        def parse_response(self, raw: str) -> dict[str, Any]:
            return {"answer": raw}

    transcript = Transcript(tmp_path / "transcript.jsonl")
    client = Client(scripted.url, retries=1)
    with pytest.raises(Exception, match="HTTP 500 after 2 attempts"):
        transcript.scope().run(client.get_response, {"q": "first"}, sample_id=1)
    assert transcript.scope().run(client.get_response, {"q": "second"}, sample_id="s2")["answer"] == "B"
    transcript.close()
    failed, answered = (json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines())
    assert failed["sample_id"] == "1" and failed["attempts"] == 2 and failed["response"] is None
    assert failed["error"].startswith("AgentHTTPError: agent at") and "HTTP 500" in failed["error"]
    assert answered == {**answered, "sample_id": "s2", "response": "B", "parsed": {"answer": "B"}, "attempts": 1}


def test_sample_ids_must_match_the_inputs(echo_agent: str) -> None:
    class Client(BenchClient):
        def prepare_input(self, raw: dict[str, Any]) -> dict[str, Any]:
            return raw

        def parse_response(self, raw: str) -> dict[str, Any]:
            return {"answer": raw}

    with pytest.raises(ValueError, match="get_responses: 1 sample ids for 2 inputs"):
        Client(echo_agent).get_responses([{"question": "a"}, {"question": "b"}], sample_ids=["a"])


def test_mmlu_pro_transcripts_never_carry_the_gold_answer(pytester: pytest.Pytester) -> None:
    pytester.runpytest_subprocess(
        "--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "-p", "no:randomly"
    )
    (run,) = pytester.path.glob(".benchflow/2*")
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    lines = [
        json.loads(line) for p in run.glob("mmlu_pro/logs/*/transcript.jsonl") for line in p.read_text().splitlines()
    ]
    assert len(lines) == len(samples) > 0
    assert {line["sample_id"] for line in lines} == {s["sample_id"] for s in samples}

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    for line in lines:
        assert not keys(line["request"]) & {"answer", "answer_index", "cot_content"}
        assert line["request"]["question"]["question_id"] == int(line["sample_id"])


def test_reading_a_transcript_back_skips_what_is_not_an_exchange_and_trims_long_fields(tmp_path: Path) -> None:
    from pytest_benchflow.results.transcript_reader import FIELD_LIMIT, read_transcript

    log_dir = tmp_path / "b" / "logs" / "t"
    log_dir.mkdir(parents=True)
    good = {"sample_id": 7, "request": {"prompt": "p" * (FIELD_LIMIT + 50)}, "response": "A", "attempts": "x"}
    lines = [json.dumps(good), "[1, 2]", "not json", json.dumps({"response": "B", "latency": 0.5}), '{"cut": ']
    (log_dir / "transcript.jsonl").write_text("\n".join(lines))
    first, second = read_transcript(tmp_path, "b/logs/t")
    assert first["sample_id"] == "7" and first["response"] == "A" and first["attempts"] is None
    assert first["request"].startswith("[prompt]\npppp") and first["request"].endswith("(59 more characters)")
    assert second == {**second, "sample_id": None, "response": "B", "latency": 0.5}
    assert read_transcript(tmp_path, "b/logs/missing") == [] and read_transcript(tmp_path, "../..") == []
