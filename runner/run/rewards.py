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
