"""The official MMLU-Pro prompt and answer extraction, and the two scoring modes."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["build_prompt", "extract_official", "extract_strict", "format_example", "public_question", "score"]

CHOICES = "ABCDEFGHIJ"
HEADER = (
    "The following are multiple choice questions (with answers) about {}. Think step by"
    ' step and then output the answer in the format of "The answer is (X)" at the end.\n\n'
)
_OFFICIAL = re.compile(r"answer is \(?([ABCDEFGHIJ])\)?")
_AGAIN = re.compile(r".*[aA]nswer:\s*([A-J])")
_FINAL = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)
# The seed the MMLU-Pro authors reset before each guess for an unparsed answer.
GUESS_SEED = 12345


def format_example(question: str, options: Sequence[str], cot_content: str = "") -> str:
    """One question as the official ``format_example`` writes it (options lettered A–J)."""
    if cot_content == "":
        cot_content = "Let's think step by step."
    if cot_content.startswith("A: "):
        cot_content = cot_content[3:]
    example = f"Question: {question}\nOptions: "
    for letter, option in zip(CHOICES, options, strict=False):
        example += f"{letter}. {option}\n"
    return example + "Answer: " + cot_content + "\n\n"


def build_prompt(category: str, shots: Sequence[dict[str, Any]]) -> str:
    """The instruction of the official API evaluation: header, then the few-shot examples."""
    return HEADER.format(category) + "".join(
        format_example(s["question"], s["options"], s["cot_content"]) for s in shots
    )


def extract_official(text: str) -> str | None:
    """The first ``answer is (X)`` letter, as in the published runs."""
    match = _OFFICIAL.search(text)
    return match.group(1) if match else None


def extract_strict(text: str) -> str | None:
    """The official three-level cascade: ``answer is (X)``, then ``Answer: X``, then the last lone letter."""
    for pattern, group in ((_OFFICIAL, 1), (_AGAIN, 1), (_FINAL, 0)):
        match = pattern.search(text)
        if match:
            return match.group(group)
    return None


def score(record: dict[str, Any], response: str, mode: str) -> tuple[str | None, bool]:
    """(pred, correct) for one answer; in ``official`` mode an unparsed answer is the authors' seeded guess."""
    pred = extract_official(response) if mode == "official" else extract_strict(response)
    if pred:
        return pred, pred == record["answer"]
    if mode == "official":
        random.seed(GUESS_SEED)
        return None, random.randint(0, len(record["options"]) - 1) == record["answer_index"]
    return None, False


def public_question(record: dict[str, Any]) -> dict[str, Any]:
    """The question as the agent may see it: no answer, answer index or worked solution."""
    return {k: record[k] for k in ("question_id", "question", "options", "category", "src")}
