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
# The authors' second and third levels are r".*[aA]nswer:\s*([A-J])" and r"\b[A-J]\b(?!.*\b[A-J]\b)"
# (DOTALL). Both backtrack quadratically on long answers; these find the same letters in linear time.
_ANSWER_COLON = re.compile(r"[aA]nswer:\s*([A-J])")
_LONE_LETTER = re.compile(r"\b[A-J]\b")
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
    """The authors' current three-level cascade: ``answer is (X)``, then ``Answer: X``, then the last lone letter.

    Like their current script, ``**`` (Markdown bold) is removed first.
    """
    text = text.replace("**", "")
    return extract_official(text) or _answer_colon(text) or _last_lone_letter(text)


def _answer_colon(text: str) -> str | None:
    # r".*[aA]nswer:\s*([A-J])" without DOTALL: the search starts at the first line holding a match,
    # and the greedy ".*" takes that line's last one (its "\s*" may run on into the next lines).
    # Matches may overlap ("Answer:Answer:D" holds "Answer:A" and "Answer:D"), so each search
    # starts one character after the previous match's start.
    match = _ANSWER_COLON.search(text)
    if match is None:
        return None
    found = text.find("\n", match.start())
    line_end = len(text) if found < 0 else found
    while (later := _ANSWER_COLON.search(text, match.start() + 1)) is not None and later.start() < line_end:
        match = later
    return match.group(1)


def _last_lone_letter(text: str) -> str | None:
    # r"\b[A-J]\b(?!.*\b[A-J]\b)" with DOTALL: the last lone letter of the whole text.
    letters = _LONE_LETTER.findall(text)
    return letters[-1] if letters else None


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
