"""Reward functions a recipe can name in `objective.reward_functions` (or use `module:function` for your own).

Each takes TRL's keyword arguments (`completions`, `prompts`, dataset columns) and returns one float per completion.
"""

from __future__ import annotations

COLORS = ("yellow", "blue", "green", "red", "white", "black", "orange", "purple")


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: a list of messages
        return " ".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def mentions_color(completions, **kwargs) -> list[float]:
    """1.0 when the completion names a color, else 0.0 (the tiny recipes' task)."""
    return [1.0 if any(c in _text(x).lower() for c in COLORS) else 0.0 for x in completions]


def length_penalty(completions, **kwargs) -> list[float]:
    """Minus the number of characters over 200 divided by 100: a mild push towards short answers."""
    return [-max(0, len(_text(x)) - 200) / 100 for x in completions]


def _normalise(text: str) -> str:
    """TriviaQA's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    import re
    import string

    text = "".join(c for c in str(text).lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _aliases(answer) -> list[str]:
    if isinstance(answer, dict):  # a TriviaQA answer record
        names = [answer.get("value"), *(answer.get("aliases") or []), *(answer.get("normalized_aliases") or [])]
        return [n for n in names if isinstance(n, str) and n]
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    return [str(answer)] if answer is not None else []


def exact_match(completions, answer=None, **kwargs) -> list[float]:
    """1.0 when the completion's first line is one of the row's answers (TriviaQA: the `answer` record's value
    or any alias), after TriviaQA's normalisation; else 0.0. Needs an `answer` column in the data."""
    if answer is None:
        raise ValueError("exact_match needs an `answer` column in the training data (e.g. format: triviaqa)")
    scores = []
    for completion, truth in zip(completions, answer):
        first = _text(completion).strip().splitlines()[0] if _text(completion).strip() else ""
        scores.append(1.0 if _normalise(first) in {_normalise(a) for a in _aliases(truth)} else 0.0)
    return scores
