"""`recipe diff A B`: what differs between two recipes (after `extends` and defaults) and between their plans.

A and B are recipe files or finished (or dry-run) output directories, whose `launch/recipe.resolved.yaml`
is compared. Recipe fields are compared as dotted paths (`datasets.train.0.source`); lists of scalars
(`target_modules`, `loss`) compare as one value. The plan rows are the numbers that decide whether and
how a run fits: batch arithmetic, precision, attention, ZeRO stage and offload, and the memory estimate.
Pure: no torch, nothing written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MISSING = "—"  # the field does not exist on this side (e.g. a different adapter kind)
IGNORED = {"extends"}  # where a value came from is not a difference in what trains


@dataclass
class Row:
    field: str
    a: Any
    b: Any


def recipe_path(arg: str) -> Path:
    """A recipe file, or the resolved recipe a run wrote into its output directory."""
    p = Path(arg)
    if p.is_dir():
        resolved = p / "launch" / "recipe.resolved.yaml"
        if not resolved.is_file():
            raise FileNotFoundError(
                f"{arg}: a directory without launch/recipe.resolved.yaml (give a recipe file or a run's output.dir)"
            )
        return resolved
    if not p.is_file():
        raise FileNotFoundError(f"{arg}: no such recipe file or output directory")
    return p


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [{"c": 1}]}} -> {"a.b.0.c": 1}; lists of scalars stay whole; empty mappings have no fields."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {f"{prefix}.length": len(value)}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def _union(first: list[str], second: list[str]) -> list[str]:
    """Both key orders in one: a key only in `second` goes right after the key it follows there."""
    keys = list(first)
    place = 0
    for k in second:
        if k in keys:
            place = keys.index(k) + 1
        else:
            keys.insert(place, k)
            place += 1
    return keys


def recipe_rows(a: dict, b: dict) -> list[Row]:
    fa, fb = (
        flatten({k: v for k, v in a.items() if k not in IGNORED}),
        flatten({k: v for k, v in b.items() if k not in IGNORED}),
    )
    keys = _union(list(fa), list(fb))
    return [Row(k, fa.get(k, MISSING), fb.get(k, MISSING)) for k in keys if fa.get(k, MISSING) != fb.get(k, MISSING)]


def plan_facts(plan) -> dict[str, Any]:
    """The plan's numbers that a reviewer compares, in reading order."""
    m = plan.memory
    facts: dict[str, Any] = {
        "trainer": plan.trainer["class"],
        "peft": plan.peft["class"] if plan.peft else None,
        "world size": plan.world_size,
        "micro batch size": plan.micro_batch_size,
        "gradient accumulation steps": plan.gradient_accumulation_steps,
        "global batch size": plan.micro_batch_size * plan.gradient_accumulation_steps * plan.world_size,
        "precision": plan.precision,
        "model dtype": plan.dtype,
        "attention": plan.attention,
        "gradient checkpointing": plan.gradient_checkpointing,
        "zero stage": "none" if plan.zero is None else plan.zero,
        "offload": plan.offload,
        "trainable parameters": m.get("trainable_params"),
        "memory per GPU (GiB)": m.get("per_gpu_gb"),
        "GPU memory (GiB)": m.get("available_gb"),
        "fits": m.get("fits"),
    }
    facts.update({f"memory: {k} (GiB)": v for k, v in (m.get("breakdown") or {}).items()})
    return facts


def plan_rows(pa, pb) -> list[Row]:
    fa, fb = plan_facts(pa), plan_facts(pb)
    return [Row(k, fa.get(k, MISSING), fb.get(k, MISSING)) for k in fa if fa.get(k, MISSING) != fb.get(k, MISSING)]


def show(value: Any) -> str:
    if value is MISSING:
        return MISSING
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int) and abs(value) >= 100_000:
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _change(a: Any, b: Any) -> str:
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        delta = b - a
        return f"{delta:+.3g}" if isinstance(delta, float) else f"{delta:+,d}"
    return ""


def diff_table(rows: list[Row], title: str, a_label: str, b_label: str) -> str:
    cells = [[r.field, show(r.a), show(r.b), _change(r.a, r.b)] for r in rows]
    header = [title, a_label, b_label, ""]
    widths = [max(len(c[i]) for c in cells + [header]) for i in range(4)]
    fmt = lambda c: "  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths[:3]] + [""])] + [fmt(c) for c in cells])


@dataclass
class Diff:
    a: str
    b: str
    recipe: list[Row]
    plan: list[Row]
    problems: dict[str, list[str]]

    def to_json(self) -> dict:
        def rows(rs: list[Row]) -> list[dict]:
            return [
                {
                    "field": r.field,
                    "a": None if r.a is MISSING else r.a,
                    "b": None if r.b is MISSING else r.b,
                    "only_in": "b" if r.a is MISSING else "a" if r.b is MISSING else None,
                }
                for r in rs
            ]

        return {
            "a": self.a,
            "b": self.b,
            "recipe": rows(self.recipe),
            "plan": rows(self.plan),
            "problems": self.problems,
        }

    def render(self) -> str:
        if not self.recipe and not self.plan:
            return f"no differences: {self.a} and {self.b} resolve to the same recipe and plan"
        parts = [f"A: {self.a}\nB: {self.b}"]
        if self.recipe:
            parts.append(diff_table(self.recipe, "recipe field (after extends and defaults)", "A", "B"))
        if self.plan:
            parts.append(diff_table(self.plan, "plan", "A", "B"))
        else:
            parts.append("plan: the same")
        for side, found in self.problems.items():
            parts += [f"{side} does not plan cleanly:"] + [f"  {p}" for p in found]
        return "\n\n".join(parts)


def diff(a, b, plan_a, plan_b, a_label: str, b_label: str) -> Diff:
    """`a`, `b`: validated Recipe objects; plans from `resolve` (a plan with problems is compared too)."""
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    problems = {
        label: [p.message for p in plan.problems if p.severity == "error"]
        for label, plan in (("A", plan_a), ("B", plan_b))
        if not plan.ok
    }
    return Diff(a_label, b_label, recipe_rows(da, db), plan_rows(plan_a, plan_b), problems)
