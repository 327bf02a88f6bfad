"""Padding and throughput of SFT batches on variable-length data: unpacked vs packed vs padding-free, one run.

    python benchmarks/packing.py [--steps 6] [--max-length 512] [--micro-batch 8]

Row lengths follow the real HH-RLHF sample in tests/fixtures/data: each chosen conversation's length in tokens (the tiny
model's tokenizer), scaled so that the 95th percentile is `--max-length` (the longer 5% are truncated, as training
truncates them). Rows are random token ids of those lengths, so every mode sees the same lengths. Each mode trains
with TRL's SFTTrainer on the CPU, as the runner configures it:

- unpacked: `--micro-batch` rows per step, padded to the longest row of the batch (TRL's collator);
- packed: TRL's best-fit-decreasing packing into rows of `--max-length` (padding-free, position ids restart per
  document), with as many packed rows per step as carry the same number of real tokens as an unpacked step;
- padding-free: `--micro-batch` rows per step concatenated into one row, no padding, not packed.

Two models: the tiny test model (assets/tiny-llama, 0.1 M parameters) and a random-weight Llama of about 3 M
parameters that takes a few seconds per step here. Reported per mode: the padding share (pad tokens / tokens
computed), real tokens per step, and real (non-pad) tokens per second over the timed steps (after one warm-up
step), with the ratio to unpacked.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH_RLHF = ROOT / "tests" / "fixtures" / "data" / "hh-rlhf-harmless-base-test-300.jsonl"
TINY = ROOT / "assets" / "tiny-llama"
MODES = ("unpacked", "packed", "padding-free")


def hh_lengths(max_length: int) -> list[int]:
    """Token lengths of the HH-RLHF sample's chosen conversations, scaled so the 95th percentile is max_length."""
    from transformers import PreTrainedTokenizerFast

    if not HH_RLHF.is_file():
        raise SystemExit(f"{HH_RLHF} is missing: the lengths are drawn from it")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(TINY / "tokenizer.json"))
    lengths = [len(tokenizer(json.loads(line)["chosen"])["input_ids"]) for line in HH_RLHF.open()]
    p95 = sorted(lengths)[int(0.95 * (len(lengths) - 1))]
    return [max(8, min(max_length, round(n * max_length / p95))) for n in lengths]


def rows(lengths: list[int], count: int, vocab: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    return [{"input_ids": [rng.randrange(3, vocab) for _ in range(rng.choice(lengths))]} for _ in range(count)]


class Counter:
    """Wraps the trainer's collator: counts the tokens each batch computes and how many of them are real."""

    def __init__(self, collator):
        self.collator, self.computed, self.real = collator, [], []

    def __call__(self, examples):
        batch = self.collator(examples)
        computed = batch["input_ids"].numel()
        real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else computed
        self.computed.append(computed)
        self.real.append(real)
        return batch


def step_times():
    from transformers import TrainerCallback

    class Times(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t)

    return Times()


def run_mode(mode: str, model_fn, data: list[dict], micro: int, max_length: int, steps: int) -> dict:
    import datasets
    from trl import SFTConfig, SFTTrainer

    from runner.common.models import load_tokenizer

    tokenizer = load_tokenizer(str(TINY))
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=micro,
            max_steps=steps + 1,
            learning_rate=1e-5,
            packing=mode == "packed",
            # TRL refuses padding-free without packing when it would have to truncate: these rows already fit
            padding_free=mode == "padding-free",
            max_length=None if mode == "padding-free" else max_length,
            report_to=[],
            save_strategy="no",
            logging_steps=10_000,
            use_cpu=True,
            disable_tqdm=True,
            dataloader_drop_last=True,
            seed=0,
        )
        trainer = SFTTrainer(
            model=model_fn(), args=config, train_dataset=datasets.Dataset.from_list(data), processing_class=tokenizer
        )
        counter = Counter(trainer.data_collator)
        trainer.data_collator = counter
        times = step_times()
        trainer.add_callback(times)
        trainer.train()
    timed = times.times[1:]  # the first step warms up
    real = counter.real[1 : len(timed) + 1]
    computed = counter.computed[1 : len(timed) + 1]
    return {
        "mode": mode,
        "micro_batch": micro,
        "steps_timed": len(timed),
        "padding_share": 1 - sum(real) / sum(computed),
        "real_tokens_per_step": statistics.mean(real),
        "tokens_per_s": sum(real) / sum(timed),
        "s_per_step": statistics.median(timed),
    }


def models(vocab: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    def tiny():
        return AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32, attn_implementation="sdpa")

    def larger():
        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=256,
            intermediate_size=688,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            vocab_size=vocab,
            max_position_embeddings=4096,
            pad_token_id=0,
            eos_token_id=2,
        )
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")

    return {"tiny (0.1 M)": tiny, "random Llama (3 M)": larger}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per mode (after one warm-up step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8, help="rows per unpacked step")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(torch.get_num_threads())
    lengths = hh_lengths(args.max_length)
    mean = statistics.mean(lengths)
    # packed rows are nearly full: as many per step as carry an unpacked step's real tokens
    packed_micro = max(1, round(args.micro_batch * mean / args.max_length))
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; lengths from "
        f"{HH_RLHF.name} scaled to p95 = {args.max_length}: mean {mean:.0f}, median {statistics.median(lengths):.0f}, "
        f"truncated {sum(n == args.max_length for n in lengths) / len(lengths):.0%}"
    )
    results = []
    for name, model_fn in models(vocab=320).items():
        vocab = model_fn().config.vocab_size
        rows_needed = (args.steps + 2) * args.micro_batch * 2
        data = rows(lengths, rows_needed, vocab)
        print(f"\n{name}: {args.steps} timed steps per mode")
        print(f"{'mode':14s} {'micro':>5s} {'padding':>8s} {'real tok/step':>13s} {'s/step':>7s} {'tok/s':>8s} ratio")
        base = None
        for mode in MODES:
            micro = packed_micro if mode == "packed" else args.micro_batch
            r = {"model": name, **run_mode(mode, model_fn, data, micro, args.max_length, args.steps)}
            base = base or r["tokens_per_s"]
            r["ratio"] = r["tokens_per_s"] / base
            results.append(r)
            print(
                f"{mode:14s} {micro:5d} {r['padding_share']:8.1%} {r['real_tokens_per_step']:13.0f} "
                f"{r['s_per_step']:7.2f} {r['tokens_per_s']:8.0f} {r['ratio']:.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    assert all(math.isfinite(r["tokens_per_s"]) for r in results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
