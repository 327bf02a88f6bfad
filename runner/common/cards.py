"""The model card (README.md) beside a trained or merged model: one renderer, filled by training and by merge."""

from __future__ import annotations

from typing import Iterable, Optional


def model_card(
    title: str, intro: Iterable[str], sections: Iterable[tuple[str, Iterable[str]]], footer: Optional[str]
) -> str:
    """Markdown: `# title`, the intro lines, one `## heading` per non-empty section, then the footer line."""
    lines = [f"# {title}", ""]
    lines += [*intro, ""]
    for heading, body in sections:
        body = list(body)
        if body:
            lines += [f"## {heading}", "", *body, ""]
    if footer:
        lines += [footer, ""]
    return "\n".join(lines)
