"""``MMLUProBench``: MMLU-Pro as BenchFlow tasks, one per category (or per question)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pytest_benchflow import BaseBench, BenchArgs, BenchmarkResult, DataFingerprint, SampleResult, fingerprint_records
from pytest_benchflow.bench import Entrance

from .data import HF_PREFIX, by_category, load_questions, split_sources, task_slug
from .evaluate import DEFAULTS, FEWSHOT_REQUIRED, evaluate, settings

__all__ = ["MMLUProBench"]


def _names(sources: str) -> str:
    """The data's sources as a label shows them: file names (not where they are), ``hf:`` names as given."""
    return ", ".join(s if s.startswith(HF_PREFIX) else Path(s).name for s in split_sources(sources))


def _one(results: Path, suffix: str) -> Path:
    found = [results / name for name in os.listdir(results) if name.endswith(suffix)]
    if len(found) != 1:
        raise FileNotFoundError(f"expected one <category>{suffix} in {results}, found {len(found)}")
    return found[0]


class MMLUProBench(BaseBench):
    """MMLU-Pro (TIGER-Lab), evaluated exactly as the authors' API evaluation does."""

    description = "MMLU-Pro multiple-choice questions, 14 categories, 5-shot chain of thought"
    splits = ("test", "validation")
    # correct/total/unparsed are counts and stderr is per category: only accuracy is a score.
    summary_metrics = ("accuracy",)
    # The gold answer of a question: public_question strips both before the agent sees it.
    answer_fields = ("answer", "answer_index")

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs(
            {
                "optional": dict(DEFAULTS),
                "choices": {"SCORING": ["official", "strict"], "TASK_UNIT": ["category", "question"]},
            }
        )

    def get_image_name(self) -> str:
        return "benchflow/mmlu-pro:0.2"

    def get_results_dir_in_container(self) -> str:
        return "/app/eval_results"

    def get_log_files_dir_in_container(self) -> str:
        return "/app/logs"

    def get_input_files(self, task_id: str) -> dict[str, list[str]]:
        """``DATA_FILE`` and ``FEWSHOT_FILE`` when they name files on this machine: a container gets copies of them
        (``hf:`` sources are read from the hub where the task runs: an argument holding one is passed as given)."""
        files: dict[str, list[str]] = {}
        for name in ("DATA_FILE", "FEWSHOT_FILE"):
            sources = split_sources(self.args.get(name) or "")
            if sources and not any(s.startswith(HF_PREFIX) for s in sources):
                files[name] = sources
        return files

    def get_entrypoint(self) -> Entrance:
        return evaluate

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        s = {**settings(self.args), "split": split}
        try:
            groups = by_category(load_questions(s["data_file"], split))
        except ValueError as e:
            return {"task_ids": [], "error_message": str(e)}
        # Checked here, once before any task, rather than by every task's evaluation.
        if s["num_shots"] > 0 and not s["fewshot_file"]:
            return {"task_ids": [], "error_message": FEWSHOT_REQUIRED}
        if s["task_unit"] == "question":
            ids = [f"{task_slug(c)}/{q['question_id']}" for c in sorted(groups) for q in groups[c]]
        else:
            ids = [task_slug(c) for c in sorted(groups)]
        return {"task_ids": ids, "error_message": None}

    def data_fingerprint(self, split: str) -> DataFingerprint:
        """The sha256 of the questions of ``split`` and of the few-shot examples the prompts use (none with
        ``NUM_SHOTS=0``), as loaded and cleaned: the same questions hash the same from JSON, parquet or the hub."""
        s = {**settings(self.args), "split": split}
        questions = load_questions(s["data_file"], split)
        label = f"sha256 of {len(questions):,} questions ({_names(s['data_file'])})"
        shots: tuple[dict[str, Any], ...] = ()
        if s["num_shots"] > 0 and s["fewshot_file"]:
            shots = load_questions(s["fewshot_file"], "validation")
            label += f" and {len(shots):,} few-shot examples ({_names(s['fewshot_file'])})"
        return fingerprint_records({"questions": questions, "fewshot": shots}, label)

    def get_result(self, task_id: str) -> BenchmarkResult:
        per_question = "/" in task_id
        results = Path(str(self.results_dir))
        answered: list[dict[str, Any]] = json.loads(_one(results, "_result.json").read_text(encoding="utf-8"))
        if per_question:
            # One question: its record says everything.
            (question,) = answered
            correct, n, unparsed = int(question["correct"]), 1, int(question["pred"] is None)
            resolved = question["pred"] == question["answer"]
            log = {"pred": question["pred"], "answer": question["answer"], "response": question["response"][-500:]}
        else:
            total = json.loads(_one(results, "_summary.json").read_text(encoding="utf-8"))
            correct, n = int(total["total"]["corr"]), int(total["total"]["corr"] + total["total"]["wrong"])
            unparsed = int(total.get("unparsed", 0))
            threshold = settings(self.args)["pass_threshold"]
            resolved = n > 0 and correct / n >= threshold
            log = {"text": f"accuracy {correct / n if n else 0:.4f} ({correct}/{n}); pass threshold {threshold}"}
        acc = correct / n if n else 0.0
        return BenchmarkResult(
            task_id=task_id,
            is_resolved=resolved,
            metrics={
                "accuracy": acc,
                "correct": correct,
                "total": n,
                "unparsed": unparsed,
                "stderr": math.sqrt(acc * (1 - acc) / n) if n else 0.0,
            },
            log=log,
            # One sample per question: the unit the paired regression gate and the report's drill-down see.
            samples=[
                SampleResult(
                    sample_id=str(q["question_id"]),
                    score=float(q["correct"]),
                    metadata={"pred": q["pred"], "answer": q["answer"]},
                )
                for q in answered
            ],
        )

    def summarize(self, tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Accuracy per category and overall (micro-averaged over questions, like MMLU-Pro's ``total``)."""
        rows: dict[str, dict[str, Any]] = {}
        for task in tasks:
            metrics = task["metrics"]
            if "correct" not in metrics:
                continue
            row = rows.setdefault(task["task_id"].split("/")[0], {"correct": 0, "total": 0})
            row["correct"] += metrics["correct"]
            row["total"] += metrics["total"]
        rows = dict(sorted(rows.items()))
        if rows:
            rows["overall"] = {
                "correct": sum(r["correct"] for r in rows.values()),
                "total": sum(r["total"] for r in rows.values()),
            }
        for row in rows.values():
            row["accuracy"] = row["correct"] / row["total"] if row["total"] else 0.0
        return rows
