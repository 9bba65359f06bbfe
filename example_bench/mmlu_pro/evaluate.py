"""The MMLU-Pro evaluation entrance: the same function runs in-process and as the image's entrypoint."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pytest_benchflow import BenchClient, report_progress

from .data import DEMO_FEWSHOT, DEMO_TEST, by_category, load_questions, question_index
from .scoring import build_prompt, format_example, public_question, score

__all__ = ["DEFAULTS", "FEWSHOT_REQUIRED", "MMLUProClient", "evaluate", "main", "select_questions", "settings"]


class MMLUProClient(BenchClient):
    """Sends ``prompt``, ``input_text`` and the label-free ``question``; expects the answer text."""

    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt": raw_step_inputs["prompt"],
            "input_text": raw_step_inputs["input_text"],
            "question": public_question(raw_step_inputs["record"]),
        }

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"response": raw_response}


#: The bench's arguments and their defaults: declared by ``MMLUProBench.get_args`` and applied
#: here too, so the entrance also runs on an environment that lacks some of them.
DEFAULTS: dict[str, Any] = {
    "DATA_FILE": "",
    "FEWSHOT_FILE": "",
    "NUM_SHOTS": 5,
    "SCORING": "official",
    "MAX_CONCURRENCY": 8,
    "TASK_UNIT": "category",
    # Well above chance (10%) and below current frontier models (~70–85%): a failed category means a real problem.
    "PASS_THRESHOLD": 0.5,
}


FEWSHOT_REQUIRED = "FEWSHOT_FILE is required with DATA_FILE (or set NUM_SHOTS=0)"


def settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The bench's arguments as typed values, ``DEFAULTS`` filling what ``env`` lacks."""

    def arg(name: str) -> Any:
        return env.get(name) or DEFAULTS[name]

    data_file = arg("DATA_FILE") or str(DEMO_TEST)
    fewshot = arg("FEWSHOT_FILE") or (str(DEMO_FEWSHOT) if data_file == str(DEMO_TEST) else "")
    return {
        "data_file": data_file,
        "fewshot_file": fewshot,
        "num_shots": int(arg("NUM_SHOTS")),
        "scoring": arg("SCORING"),
        "max_concurrency": int(arg("MAX_CONCURRENCY")),
        "task_unit": arg("TASK_UNIT"),
        "pass_threshold": float(arg("PASS_THRESHOLD")),
        "split": env.get("BENCHFLOW_SPLIT") or "test",
    }


def select_questions(s: Mapping[str, Any], task_id: str) -> tuple[str, list[dict[str, Any]]]:
    """(category, questions) of a task id: ``law`` (a category) or ``law/866`` (one question)."""
    groups = question_index(s["data_file"], s["split"])
    slug, _, question_id = task_id.partition("/")
    if slug not in groups:
        raise ValueError(f"no MMLU-Pro category {slug!r} in {s['data_file']}")
    category, by_id = groups[slug]
    if not question_id:
        return category, list(by_id.values())
    if question_id not in by_id:
        raise ValueError(f"no question {question_id} in category {category!r}")
    return category, [by_id[question_id]]


def evaluate(env: Mapping[str, str]) -> dict[str, Any]:
    """Evaluate task ``TEST_START_ID`` against ``INTELLIGENCE_URL``; write the official result files.

    Writes ``<category>_result.json`` (each question with ``pred`` and ``response``) and, for a
    category task, ``<category>_summary.json`` (``corr``, ``wrong``, ``acc``, plus ``unparsed``) into
    ``BENCHFLOW_RESULTS_DIR`` and returns the summary.
    """
    s = settings(env)
    category, questions = select_questions(s, env["TEST_START_ID"])
    shots: list[dict[str, Any]] = []
    if s["num_shots"] > 0:
        if not s["fewshot_file"]:
            raise ValueError(FEWSHOT_REQUIRED)
        shots = by_category(load_questions(s["fewshot_file"], "validation")).get(category, [])[: s["num_shots"]]
    prompt = build_prompt(category, shots)
    out = Path(env["BENCHFLOW_RESULTS_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    responses, failure = _ask(env, s, out / f"{category}_answers.jsonl", prompt, questions)
    results, corr, unparsed = [], 0, 0
    for q in questions:
        response = responses.get(str(q["question_id"]))
        if response is None:
            continue
        pred, correct = score(q, response, s["scoring"])
        corr += correct
        unparsed += pred is None
        results.append({**q, "pred": pred, "response": response, "correct": correct})
    # Compact: the per-question file of a large category runs to megabytes.
    (out / f"{category}_result.json").write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    total = len(questions)
    if failure is not None:
        # The answered questions are kept above (and in the answers log, for a resumed run).
        raise RuntimeError(f"{len(results)} of {total} questions answered; then: {failure}") from failure
    figures = {"corr": float(corr), "wrong": float(total - corr), "acc": corr / total if total else 0.0}
    summary = {category: figures, "total": figures, "unparsed": unparsed, "scoring": s["scoring"]}
    if "/" not in env["TEST_START_ID"]:  # a one-question task's record already says it all
        (out / f"{category}_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _ask(
    env: Mapping[str, str], s: Mapping[str, Any], log_path: Path, prompt: str, questions: list[dict[str, Any]]
) -> tuple[dict[str, str], Exception | None]:
    """Each question's response by id, and the failure that stopped the batch (None when all were answered).

    With more than one question, every answer is appended to ``log_path`` as it arrives, and
    answers already there (an earlier, interrupted attempt at this task) are not asked again.
    """
    responses = _read_log(log_path) if len(questions) > 1 else {}
    pending = [q for q in questions if str(q["question_id"]) not in responses]
    client = MMLUProClient(env["INTELLIGENCE_URL"])
    log = _AnswerLog(log_path) if len(questions) > 1 else None

    def keep(i: int, answer: dict[str, Any]) -> None:  # called one at a time
        question_id = pending[i]["question_id"]
        responses[str(question_id)] = answer["response"]
        if log is not None:
            log.write({"question_id": question_id, "response": answer["response"]})

    try:
        client.get_responses(
            [
                {"prompt": prompt, "input_text": format_example(q["question"], q["options"]), "record": q}
                for q in pending
            ],
            max_concurrency=s["max_concurrency"],
            on_done=lambda done, total: report_progress(env, done, total),
            on_result=keep,
            sample_ids=[str(q["question_id"]) for q in pending],
        )
    except Exception as e:
        return responses, e
    finally:
        if log is not None:
            log.close()
    return responses, None


class _AnswerLog:
    """The answers log of a category task, appended to as answers arrive.

    On Ctrl-C the task unwinds while the client's threads still deliver the answers in flight:
    those arrive after :meth:`close` and are dropped quietly (the log already holds every answer
    that finished before the interrupt; a resumed run asks the rest again).
    """

    def __init__(self, path: Path) -> None:
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(entry) + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _read_log(path: Path) -> dict[str, str]:
    responses: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                responses[str(entry["question_id"])] = str(entry["response"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut off by an interruption
    return responses


def main() -> int:
    """Container entrypoint: evaluate the task named by the environment."""
    try:
        summary = evaluate(os.environ)
    except Exception as e:
        print(f"mmlu-pro: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
