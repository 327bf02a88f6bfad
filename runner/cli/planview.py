"""`recipe plan` as text: decisions, a memory bar against the GPU, the launch command."""

from __future__ import annotations

import json

from runner.plan import Plan
from runner.plan.launchfiles import shell_command
from runner.plan.memory import SAFETY_MARGIN

BAR = 40
LABELS = {
    "weights": "weights",
    "gradients": "gradients",
    "optimizer_states": "optimizer states",
    "activations": "activations",
    "logits": "logits",
    "temporaries": "temporaries",
    "ddp_buckets": "DDP buckets",
    "reference_model": "reference model",
    "reward_model": "reward model",
    "autocast_copies": "16-bit copies",
    "runtime_overhead": "runtime overhead",
}


def _bar(part: float, whole: float, width: int = BAR) -> str:
    filled = 0 if whole <= 0 else min(width, round(width * part / whole))
    return "#" * filled + "." * (width - filled)


def render_plan(plan: Plan, source: str) -> str:
    r = plan.recipe
    lines = [f"plan for {r.name} ({source})", ""]
    trainer = plan.trainer["class"]
    adapter = r.adapter.kind + (f" on {r.quantization.method} weights" if r.is_quantized else "")
    lines.append(f"  {r.objective.kind} with {trainer}, adapter {adapter}, model {r.model.name_or_path}")
    hw = plan.hardware
    where = f"{hw.name}: {r.hardware.gpus_per_node} per node × {r.hardware.nodes} node(s)"
    lines.append(f"  on {where}, world size {plan.world_size}")
    lines.append("")
    lines.append("decisions")
    width = max(len(d.what) for d in plan.decisions)
    for d in plan.decisions:
        lines.append(f"  {d.what.ljust(width)}  {str(d.value):<22} {d.why}")
    lines.append("")
    mem = plan.memory
    unit = "GPU" if hw.is_gpu else "process"
    if mem.get("per_gpu_gb") is None:
        lines.append(f"memory per {unit}: not estimated ({mem.get('architecture')})")
    else:
        total, avail = mem["per_gpu_gb"], mem["available_gb"]
        share = total / avail * 100 if avail else 0
        verdict = "fits" if mem["fits"] else "DOES NOT FIT"
        lines.append(
            f"memory per {unit} (estimate): {total:.1f} GiB of {avail:.1f} GiB — {share:.0f}%, "
            f"{verdict} (limit {int(SAFETY_MARGIN * 100)}%)"
            + (f", peak at the {mem['peak_phase']}" if mem.get("peak_phase") else "")
        )
        lines.append(f"  [{_bar(total, avail)}]")
        for key, gb in mem["breakdown"].items():
            if gb > 0:
                lines.append(f"  {LABELS.get(key, key):<17} {gb:7.2f} GiB  {_bar(gb, avail)}")
        if mem.get("offload_cpu_gb_per_node"):
            lines.append(
                f"  CPU memory for offload: {mem['offload_cpu_gb_per_node']:.0f} GiB per node of "
                f"{mem['cpu_ram_gb']:g} GiB"
            )
        lines.append(
            f"  parameters: {mem['total_params'] / 1e9:.2f} B, "
            f"trainable {mem['trainable_params'] / 1e6:.1f} M ({mem['architecture']})"
        )
    lines.append("")
    if plan.deepspeed is not None:
        zero = plan.deepspeed["zero_optimization"]
        lines.append(
            f"deepspeed: ZeRO-{zero['stage']}"
            + (f", offload {plan.offload}" if plan.offload != "none" else "")
            + f" -> {plan.launch_dir}/ds_config.json"
        )
    lines.append("launch:")
    lines.append("  " + shell_command(plan.launch))
    return "\n".join(lines)


def _leaves(node, path: tuple = ()):
    """(path, value) of every field; lists are one value (a list in a recipe replaces its base's whole)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    else:
        yield path, node


def _at(node, path: tuple):
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def explain_fields(loaded, plan: Plan) -> list[dict]:
    """Every field of the resolved recipe, its value, and where it came from: a file and line (the recipe or one it
    extends), `--set`, the schema's default, or the plan (an `auto` decided)."""
    written = plan.recipe.model_dump(mode="json")
    rows = []
    for path, value in _leaves(plan.resolved):
        location = loaded.sources.values.get(path) or loaded.sources.keys.get(path)
        source = location.render() if location is not None else "default"
        before = _at(written, path)
        if before != value:
            source = f"{'default' if location is None else source} {json.dumps(before)}, decided by the plan"
        rows.append({"field": ".".join(map(str, path)), "value": value, "from": source})
    return rows


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_explain(rows: list[dict]) -> str:
    width = max(len(r["field"]) for r in rows)
    shown = [(r["field"], _short(json.dumps(r["value"], ensure_ascii=False)), r["from"]) for r in rows]
    vwidth = min(40, max(len(v) for _, v, _ in shown))
    return "\n".join(f"{f.ljust(width)}  {v.ljust(vwidth)}  {src}" for f, v, src in shown)


# the estimate's items under the measurement's categories (the runtime overhead has no counterpart)
MEASURED_AS = {
    "weights": "weights",
    "gradients": "gradients",
    "optimizer_states": "optimizer_states",
    "activations": "activations",
    "logits": "activations",
    "temporaries": "temporaries",
    "autocast_copies": "temporaries",
    "reference_model": "weights",
    "reward_model": "weights",
}


def render_measurement(plan: Plan, measured) -> str:
    """The estimate beside one measured training step, by category."""
    est: dict[str, float] = {}
    for key, gb in plan.memory["breakdown"].items():
        if key in MEASURED_AS:
            est[MEASURED_AS[key]] = est.get(MEASURED_AS[key], 0.0) + gb
    total = sum(est.values())
    lines = [
        f"measured: one training step at full size with fake tensors, one process, peak at the {measured.phase}",
        f"  {'':<17} {'estimate':>9} {'measured':>9}",
    ]
    for key, gb in measured.peak.items():
        lines.append(f"  {LABELS.get(key, key):<17} {est.get(key, 0.0):9.2f} {gb:9.2f}")
    diff = total / measured.total - 1 if measured.total else 0.0
    lines.append(f"  {'total':<17} {total:9.2f} {measured.total:9.2f}  ({diff:+.1%}; runtime overhead not measured)")
    not_measured = [k for k in ("ddp_buckets",) if plan.memory["breakdown"].get(k)]
    if not_measured:
        lines.append(f"  not measured (one process): {', '.join(LABELS.get(k, k) for k in not_measured)}")
    lines += [f"  note: {n}" for n in measured.notes]
    return "\n".join(lines)
