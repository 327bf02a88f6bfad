"""Reward functions a recipe can name in `objective.reward_functions` (or use `module:function` for your own).

Each takes TRL's keyword arguments (`completions`, `prompts`, dataset columns) and returns one float per completion.
"""

from __future__ import annotations

from runner.common import answers

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


def exact_match(completions, answer=None, **kwargs) -> list[float]:
    """1.0 when the completion's first line is one of the row's answers (TriviaQA: the `answer` record's value
    or any alias), after TriviaQA's normalisation (runner/common/answers.py, which `recipe eval` scores with too);
    else 0.0. Needs an `answer` column in the data."""
    if answer is None:
        raise ValueError("exact_match needs an `answer` column in the training data (e.g. format: triviaqa)")
    return [
        answers.exact_match_score(answers.first_line(_text(c)), answers.aliases(a)) for c, a in zip(completions, answer)
    ]
