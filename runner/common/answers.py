"""Scoring a generated answer against reference answers: TriviaQA's normalisation, exact match and token F1.

Used by the `exact_match` reward function of online RL and by `recipe eval`'s `exact-match` task, so that a run is
rewarded and measured by the same rule. Pure Python.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

_PUNCTUATION = set(string.punctuation)


def normalise(text: Any) -> str:
    """TriviaQA's (and SQuAD's) answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in str(text).lower() if c not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def aliases(answer: Any) -> list[str]:
    """The accepted answers of a row: a TriviaQA answer record's value and aliases, a list, or one string."""
    if isinstance(answer, dict):  # a TriviaQA answer record
        names = [answer.get("value"), *(answer.get("aliases") or []), *(answer.get("normalized_aliases") or [])]
        return [n for n in names if isinstance(n, str) and n]
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    return [str(answer)] if answer is not None else []


def first_line(text: str) -> str:
    """The answer a generation gives: its first non-empty line (a model may go on after answering)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def exact_match_score(prediction: str, references: list[str]) -> float:
    """1.0 when the normalised prediction equals one of the normalised references, else 0.0."""
    return 1.0 if normalise(prediction) in {normalise(r) for r in references} else 0.0


def token_f1(prediction: str, references: list[str]) -> float:
    """The best token-overlap F1 between the normalised prediction and any reference (SQuAD's F1)."""
    predicted = normalise(prediction).split()
    best = 0.0
    for reference in references:
        expected = normalise(reference).split()
        if not predicted or not expected:
            best = max(best, float(predicted == expected))
            continue
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
