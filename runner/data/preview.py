"""`recipe data`: the first rows as the trainer receives them; with --template, the trained-on part marked."""

from __future__ import annotations

import json
from typing import Any

from runner.common.sandbox import TemplateRefused, check_render
from runner.plan.training import loss_scope

OPEN, CLOSE = "«", "»"  # marks the tokens the loss is computed on


def _render(tokenizer, messages: list, generation_prompt: bool = False) -> str:
    check_render(tokenizer, messages, generation_prompt)  # a hostile template fails there, with one line
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _prompt_then(tokenizer, prompt: list, completion: list) -> str:
    """prompt rendered, then the completion's rendering marked as trained-on."""
    head = _render(tokenizer, prompt, generation_prompt=True)
    full = _render(tokenizer, prompt + completion)
    if full.startswith(head):
        return head + OPEN + full[len(head) :] + CLOSE
    return OPEN + full + CLOSE  # a template that re-renders earlier turns: mark it all


def assistant_marked(tokenizer, messages: list) -> str:
    """The conversation as the trainer tokenizes it, with the tokens of the assistant mask (what TRL's
    `assistant_only_loss` trains on, from the template's `{% generation %}` markers) between « and »."""
    check_render(tokenizer, messages)
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            text = tokenizer.decode(ids[start:i])
            out.append(OPEN + text + CLOSE if mask[start] else text)
            start = i
    return "".join(out)


def templated_row(row: dict, tokenizer, recipe: Any) -> dict[str, str]:
    """The row as text(s) through the chat template, the trained-on part between « and »."""
    o = recipe.objective
    if "text" in row:
        return {"text": OPEN + row["text"] + CLOSE}
    if "messages" in row:
        if o.kind == "sft" and loss_scope(recipe).assistant_only:
            return {"text": assistant_marked(tokenizer, row["messages"])}
        return {"text": OPEN + _render(tokenizer, row["messages"]) + CLOSE}
    if "chosen" in row:
        return {
            "chosen": _prompt_then(tokenizer, row["prompt"], row["chosen"]),
            "rejected": _prompt_then(tokenizer, row["prompt"], row["rejected"]),
        }
    if "completion" in row:
        if o.kind == "sft" and not loss_scope(recipe).completion_only:
            return {"text": OPEN + _render(tokenizer, row["prompt"] + row["completion"]) + CLOSE}
        out = {"text": _prompt_then(tokenizer, row["prompt"], row["completion"])}
        if "label" in row:
            out["label"] = "desirable" if row["label"] else "undesirable"
        return out
    return {"prompt": _render(tokenizer, row["prompt"], generation_prompt=True) + f"{OPEN}(generated){CLOSE}"}


def preview(recipe: Any, split: str, head: int, as_json: bool, template: bool) -> str:
    from .sources import load_split

    ds = load_split(recipe, split)
    if ds is None:
        return f"(no {split} data: the recipe has no eval sources and no eval_fraction)"
    rows = [ds[i] for i in range(min(head, len(ds)))]
    if template:
        from runner.common.models import recipe_tokenizer

        tokenizer = recipe_tokenizer(recipe)
        rendered = []
        for i, r in enumerate(rows):
            try:
                rendered.append(templated_row(r, tokenizer, recipe))
            except TemplateRefused as exc:
                raise TemplateRefused(f"the chat template cannot render {split} row {i}: {exc}") from None
        if as_json:
            return json.dumps(rendered, indent=2, ensure_ascii=False)
        blocks = []
        for i, r in enumerate(rendered):
            blocks.append(f"--- row {i} ---")
            for key, text in r.items():
                blocks.append(f"[{key}]\n{text}" if len(r) > 1 else text)
        return "\n".join(blocks) + f"\n\n{OPEN}…{CLOSE} is what the loss is computed on. {len(ds)} rows in {split}."
    if as_json:
        return json.dumps(rows, indent=2, ensure_ascii=False)
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + f"\n({len(ds)} rows in {split})"
