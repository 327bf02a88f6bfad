"""`extends`: how a recipe's values merge over the recipes it extends, and where each value came from."""

from __future__ import annotations

import json

from runner.plan import resolve
from schemas import load

from conftest import ROOT

BASE = """\
version: 1
name: base
model: {name_or_path: gpt2}
adapter: {kind: lora, r: 8}
objective: {kind: sft}
datasets:
  train:
    - {source: "jsonl:a.jsonl", format: messages}
    - {source: "jsonl:b.jsonl", format: messages}
training:
  learning_rate: 1.0e-4
  global_batch_size: 8
  lr_scheduler: cosine_with_restarts
  lr_scheduler_kwargs: {num_cycles: 3}
  warmup_ratio: 0.1
  logging_every: 5
output: {report_to: [tensorboard]}
hardware: {profile: a100-80gb}
"""


def child(write, text: str):
    write("base.yaml", BASE)
    path = write("child.yaml", "version: 1\nname: child\nextends: base.yaml\n" + text)
    loaded = load(path)
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    return loaded.recipe


def test_mappings_merge_key_by_key(write):
    r = child(write, "training: {epochs: 2}\nadapter: {r: 16}\n")
    assert (r.training.epochs, r.training.learning_rate, r.training.lr_scheduler_kwargs) == (2, 1e-4, {"num_cycles": 3})
    assert (r.adapter.r, r.adapter.kind) == (16, "lora")


def test_an_empty_mapping_clears_the_base_mapping(write):
    r = child(write, "training: {lr_scheduler: cosine, lr_scheduler_kwargs: {}}\n")
    assert r.training.lr_scheduler_kwargs == {}


def test_lists_replace_and_an_empty_list_empties(write, tmp_path):
    r = child(write, "datasets:\n  train: [{source: 'jsonl:c.jsonl', format: messages}]\noutput: {report_to: []}\n")
    # a relative path is relative to the file that names it (the child, in tmp_path)
    assert [d.source for d in r.datasets.train] == [f"jsonl:{tmp_path / 'c.jsonl'}"] and r.output.report_to == []


def test_null_resets_to_the_default(write):
    r = child(write, "training: {warmup_ratio: null, logging_every: null}\n")
    assert r.training.warmup_ratio is None and r.training.logging_every == 10


def test_the_70b_dpo_recipe_drops_its_parents_restarts():
    """It writes `lr_scheduler_kwargs: {}`: the DPO learning rate must not restart at 30% and 70% of training."""
    loaded = load(ROOT / "recipes" / "llama3-70b-dpo-qlora-zero3.yaml")
    plan = resolve(loaded.recipe, {})
    assert plan.trainer["args"]["lr_scheduler_type"] == "cosine" and plan.trainer["args"]["lr_scheduler_kwargs"] == {}


def test_plan_explain_names_the_file_and_line_of_each_value(cli, write):
    write("base.yaml", BASE)
    recipe = write("child.yaml", "version: 1\nname: child\nextends: base.yaml\ntraining: {epochs: 2}\n")
    code, out, _ = cli("plan", str(recipe), "--explain", "--json", "--set", "adapter.r=4")
    rows = {r["field"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["training.epochs"]["from"] == f"{recipe}:4:20"
    assert rows["training.learning_rate"]["from"].endswith("base.yaml:11:18")
    assert rows["adapter.r"]["from"] == f"{recipe}:--set" and rows["adapter.r"]["value"] == 4
    assert rows["training.seed"]["from"] == "default"
    assert rows["training.micro_batch_size"]["from"] == 'default "auto", decided by the plan'
    code, text, _ = cli("plan", str(recipe), "--explain")
    assert code == 0 and any(
        line.startswith("training.epochs") and "child.yaml:4:20" in line for line in text.splitlines()
    )
