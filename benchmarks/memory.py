"""The memory estimate against one measured training step, for the shipped recipes and variants of them.

Each configuration is planned as `recipe plan` plans it, then measured at full size with fake tensors
(`runner/measure`: torch's FakeTensorMode and MemTracker, the plan's model, adapter, precision, loss path and
optimizer, two steps, the peak of the second). Prints the estimate and the measurement by category and their
ratio; the estimate's runtime overhead (the CUDA context, which fake tensors cannot see) is shown on its own and left
out of the comparison.

    python benchmarks/memory.py [--only NAME] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONE_GPU = ["hardware.gpus_per_node=1", "hardware.zero=none", "hardware.gpu_memory_gb=141"]
# (name, recipe, --set overrides): the shipped recipes whose step runs on one process, and variants that move one
# term at a time (checkpointing, length, batch, dropout, optimizer, precision)
CONFIGS = [
    ("8B LoRA 2x1024", "recipes/llama31-8b-chat-sft-lora.yaml", []),
    ("8B LoRA 2x1024 ckpt", "recipes/llama31-8b-chat-sft-lora.yaml", ["training.gradient_checkpointing=true"]),
    (
        "8B LoRA 1x2048",
        "recipes/llama31-8b-chat-sft-lora.yaml",
        ["training.micro_batch_size=1", "training.max_length=2048"],
    ),
    ("8B LoRA dropout 0.05", "recipes/llama31-8b-chat-sft-lora.yaml", ["adapter.dropout=0.05"]),
    ("8B DoRA", "recipes/llama31-8b-triviaqa-sft-dora.yaml", []),
    ("8B DPO LoRA", "recipes/llama31-8b-chat-dpo-lora.yaml", []),
    ("8B DPO QLoRA", "recipes/llama3-dpo-qlora.yaml", []),
    ("8B SimPO LoRA", "recipes/llama31-8b-chat-simpo-lora.yaml", []),
    # full fine-tuning on one GPU without DeepSpeed (the shipped recipes use ZeRO, which fake tensors cannot run)
    ("8B SFT full, 1 GPU", "recipes/llama31-8b-chat-sft-full.yaml", ONE_GPU),
    (
        "8B SFT full, 1 GPU ckpt",
        "recipes/llama31-8b-chat-sft-full.yaml",
        [*ONE_GPU, "training.gradient_checkpointing=true"],
    ),
    ("Llama-2-7B QLoRA", "recipes/llama2-7b-lima-sft-qlora.yaml", []),
    ("Gemma-2B QLoRA", "recipes/gemma-2b-lima-sft-qlora.yaml", []),
    ("BLOOM-1b1 full, 1 GPU", "recipes/bloom-1b1-lima-sft-full.yaml", ONE_GPU),
    ("GPT-2 DPO LoRA", "recipes/gpt2-hh-rlhf-dpo-lora.yaml", []),
    ("GPT-2 reward LoRA", "recipes/gpt2-hh-rlhf-reward-lora.yaml", []),
]


def run(name: str, recipe: str, overrides: list[str]) -> dict:
    from runner.cli import load_and_plan
    from runner.measure.step import measure

    loaded, plan = load_and_plan(str(ROOT / recipe), overrides)
    if plan is None:
        raise SystemExit(f"{recipe} does not plan: {[d.message for d in loaded.diagnostics]}")
    start = time.time()
    measured = measure(plan)
    return {
        "name": name,
        "recipe": recipe,
        "set": overrides,
        "estimate": plan.memory,
        "measured": measured.to_json(),
        "seconds": round(time.time() - start, 1),
    }


def row(result: dict) -> str:
    est = result["estimate"]
    overhead = est["breakdown"].get("runtime_overhead", 0.0)
    estimate = est["per_gpu_gb"] - overhead
    measured = result["measured"]["peak_gb"]
    return (
        f"{result['name']:24} {estimate:8.2f} {measured:8.2f} {estimate / measured - 1:+7.1%}  "
        f"{result['measured']['phase']:15} {result['seconds']:5.0f}s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the configurations whose name contains this")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    results = []
    print(f"{'configuration':24} {'est GiB':>8} {'meas GiB':>8} {'diff':>7}  {'peak phase':15} {'time':>6}")
    for name, recipe, overrides in CONFIGS:
        if args.only and args.only.lower() not in name.lower():
            continue
        try:
            results.append(run(name, recipe, overrides))
        except Exception as exc:  # one configuration the harness cannot run does not stop the others
            print(f"{name:24} not measured: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        print(row(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
