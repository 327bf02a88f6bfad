"""Rows per second of `recipe eval`'s generation (exact-match) and scoring (preference) by batch size, on the CPU.

    python benchmarks/eval_speed.py [--rows 64] [--batch-sizes 1,8,32] [--repeats 3]

The tiny Llama (assets/tiny-llama) with the tiny SFT recipe's tokenizer and chat template answers the TriviaQA-shaped
colour questions (assets/data/triviaqa-*.jsonl, greedy, 24 new tokens) and scores the preference pairs, through the
same functions `recipe eval` runs (runner/after/evaltasks.py). Medians of `--repeats` runs; batch size 1 is the
baseline of the ratios. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from runner.after.evaltasks import Renderer, completion_logps, generate
    from runner.common.models import recipe_tokenizer, stop_token_ids
    from schemas import load
    from schemas.evaluation import Generation

    torch.set_num_threads(2)
    recipe = load(ROOT / "recipes/tiny/sft-lora.yaml").recipe
    tokenizer = recipe_tokenizer(recipe)
    model = AutoModelForCausalLM.from_pretrained(ROOT / "assets/tiny-llama", dtype=torch.float32).eval()
    renderer = Renderer(tokenizer, templated=True)
    data = ROOT / "assets/data"
    questions = [json.loads(x)["question"] for x in (data / "triviaqa-train.jsonl").read_text().splitlines()]
    prompts = [renderer.prompt_ids([{"role": "user", "content": q}]) for q in questions[: args.rows]]
    pairs_rows = [json.loads(x) for x in (data / "preference-train.jsonl").read_text().splitlines()[: args.rows]]
    pairs = [renderer.pair_ids(r["prompt"], r[k]) for r in pairs_rows for k in ("chosen", "rejected")]
    generation = Generation(max_new_tokens=24)
    stops = stop_token_ids(tokenizer)

    def timed(fn) -> float:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    print(f"{len(prompts)} rows, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'batch':>5}  {'generate rows/s':>15}  {'ratio':>5}  {'score pairs/s':>13}  {'ratio':>5}")
    baseline = None
    for size in [int(x) for x in args.batch_sizes.split(",")]:
        g = timed(lambda size=size: generate(model, tokenizer, prompts, generation, size, stops))
        s = timed(lambda size=size: completion_logps(model, pairs, size, tokenizer.pad_token_id, 512))
        rates = (len(prompts) / g, len(pairs_rows) / s)
        baseline = baseline or rates
        print(
            f"{size:>5}  {rates[0]:>15.1f}  {rates[0] / baseline[0]:>4.1f}x  {rates[1]:>13.1f}  "
            f"{rates[1] / baseline[1]:>4.1f}x"
        )


if __name__ == "__main__":
    main()
