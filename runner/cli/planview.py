"""`recipe plan` as text: decisions, a memory bar against the GPU, the launch command."""

from __future__ import annotations

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
