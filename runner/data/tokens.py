"""Token statistics of the rows a run trains on (`recipe data RECIPE --check`): the trainer's rows (runner/data/
sources.py) rendered with the recipe's tokenizer and chat template, lengths against `max_length`, the share of
tokens the loss is computed on, steps per epoch. Tokenized in parallel across the cores with `datasets.map`.

Lengths follow TRL 1.16's tokenization: a conversation is the rendered template; a prompt is rendered with the
generation prompt and its completion is what the full rendering adds; text gets the end-of-sequence token
appended. Truncation keeps the start (TRL's only mode), so a prompt that fills `max_length` alone leaves nothing of
the answer to train on.
"""

from __future__ import annotations

import math
import os
from typing import Any

from runner.common.sandbox import TemplateRefused, check_render
from runner.plan.training import loss_scope

BINS = 10


def _lengths(tokenizer: Any, row: dict, assistant_only: bool, completion_only: bool) -> dict:
    """length (tokens of the longest sequence the row becomes), prompt, trained (tokens the loss is on),
    total (tokens the trainer processes: both sequences of a pair)."""

    def render(messages: list, generation_prompt: bool = False) -> list[int]:
        check_render(tokenizer, messages, generation_prompt)  # a hostile template fails there, with one line
        return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)[
            "input_ids"
        ]

    if "text" in row:
        n = len(tokenizer(row["text"])["input_ids"]) + 1  # the eos SFT appends
        return {"length": n, "prompt": 0, "trained": n, "total": n}
    if "messages" in row:
        if assistant_only:
            check_render(tokenizer, row["messages"])
            encoded = tokenizer.apply_chat_template(
                row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            n, trained = len(encoded["input_ids"]), sum(encoded["assistant_masks"])
        else:
            n = trained = len(render(row["messages"]))
        return {"length": n, "prompt": 0, "trained": trained, "total": n}
    prompt = len(render(row["prompt"], generation_prompt=True))
    if "chosen" in row:
        chosen = len(render(row["prompt"] + row["chosen"])) - prompt
        rejected = len(render(row["prompt"] + row["rejected"])) - prompt
        return {
            "length": prompt + max(chosen, rejected),
            "prompt": prompt,
            "trained": chosen + rejected,
            "total": 2 * prompt + chosen + rejected,
        }
    if "completion" in row:
        full = len(render(row["prompt"] + row["completion"]))
        trained = full - prompt if completion_only else full
        return {"length": full, "prompt": prompt, "trained": trained, "total": full}
    return {"length": prompt, "prompt": prompt, "trained": 0, "total": prompt}  # online RL: generated


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def split_stats(ds: Any, tokenizer: Any, plan: Any) -> dict:
    """Statistics of one split's trainer rows."""
    args = plan.trainer["args"]
    # SFT: the recipe's loss scope; the preference and unpaired trainers train on completions only
    scope = loss_scope(plan.recipe)
    assistant_only, completion_only = (
        (scope.assistant_only, scope.completion_only) if plan.recipe.objective.kind == "sft" else (False, True)
    )
    max_length = args.get("max_length")

    def batch_fn(batch: dict, indices: list) -> dict:
        out: dict[str, list] = {}
        for i, index in enumerate(indices):
            try:
                lengths = _lengths(tokenizer, {k: batch[k][i] for k in batch}, assistant_only, completion_only)
            except TemplateRefused as exc:
                raise TemplateRefused(f"row {index}: {exc}") from None
            for k, v in lengths.items():
                out.setdefault(k, []).append(v)
        return out

    procs = min(os.cpu_count() or 1, max(1, len(ds) // 2000))
    lengths = ds.map(
        batch_fn,
        batched=True,
        with_indices=True,
        batch_size=500,
        num_proc=procs if procs > 1 else None,
        remove_columns=ds.column_names,
        desc="counting tokens",
    )
    length = sorted(lengths["length"])
    prompt, trained, total = lengths["prompt"], lengths["trained"], lengths["total"]
    rows = len(length)
    stats: dict[str, Any] = {
        "rows": rows,
        "tokens": sum(total),
        "trained_tokens": sum(trained),
        "trained_share": round(sum(trained) / sum(total), 4) if sum(total) else 0.0,
        "length": {"p50": _percentile(length, 0.5), "p95": _percentile(length, 0.95), "max": length[-1] if rows else 0},
        "max_length": max_length,
        "histogram": histogram(length),
    }
    if max_length:
        stats["truncated_share"] = round(sum(1 for n in length if n > max_length) / rows, 4) if rows else 0.0
        if any(prompt):
            stats["prompt_fills_max_length_share"] = (
                round(sum(1 for p in prompt if p >= max_length) / rows, 4) if rows else 0.0
            )
    return stats


def histogram(values: list[int], bins: int = BINS) -> list[dict]:
    """Equal-width bins from the shortest to the longest: [{from, to, rows}]."""
    if not values:
        return []
    low, top = min(values), max(values)
    width = max(1, math.ceil((top - low + 1) / bins))
    counts = [0] * math.ceil((top - low + 1) / width)
    for v in values:
        counts[(v - low) // width] += 1
    return [{"from": low + i * width, "to": low + (i + 1) * width - 1, "rows": c} for i, c in enumerate(counts)]


def token_stats(plan: Any) -> dict:
    """{train: stats, eval: stats, steps_per_epoch} for the plan's recipe, with its tokenizer and template."""
    from runner.common.models import recipe_tokenizer

    from .sources import load_splits

    tokenizer = recipe_tokenizer(plan.recipe)
    train, held_out = load_splits(plan.recipe)
    out: dict[str, Any] = {}
    for split, ds in (("train", train), ("eval", held_out)):
        if ds is None:
            continue
        try:
            out[split] = split_stats(ds, tokenizer, plan)
        except TemplateRefused as exc:
            raise TemplateRefused(f"the chat template cannot render {split} {exc}") from None
    global_batch = plan.micro_batch_size * plan.gradient_accumulation_steps * plan.world_size
    out["global_batch_size"] = global_batch
    out["steps_per_epoch"] = math.ceil(out["train"]["rows"] / global_batch)
    return out


def render_stats(stats: dict) -> str:
    lines = []
    for split in ("train", "eval"):
        s = stats.get(split)
        if not s:
            continue
        length = s["length"]
        lines.append(
            f"{split}: {s['rows']:,} rows, {s['tokens']:,} tokens, length p50 {length['p50']:,} / p95 {length['p95']:,}"
            f" / max {length['max']:,}; trained on {100 * s['trained_share']:.1f}% of the tokens"
        )
        if s.get("max_length"):
            line = f"  over max_length {s['max_length']:,}: {100 * s['truncated_share']:.1f}% of rows (truncated)"
            if "prompt_fills_max_length_share" in s:
                line += (
                    f"; prompt alone fills it: {100 * s['prompt_fills_max_length_share']:.1f}% "
                    "(nothing of the answer trained)"
                )
            lines.append(line)
        peak = max((b["rows"] for b in s["histogram"]), default=0)
        for b in s["histogram"]:
            bar = "█" * round(40 * b["rows"] / peak) if peak else ""
            mark = " <- max_length" if s.get("max_length") and b["from"] <= s["max_length"] <= b["to"] else ""
            lines.append(f"  {b['from']:>7,}-{b['to']:<7,} {b['rows']:>8,} {bar}{mark}")
    lines.append(f"steps per epoch: {stats['steps_per_epoch']:,} (global batch {stats['global_batch_size']})")
    return "\n".join(lines)
