"""Packing and padding-free rows keep their documents apart: each document's per-token loss in a packed row equals
its loss run alone, on every attention implementation the plan may choose, and the plan refuses the model types
where it does not.

The rows are made by TRL's own collator (`DataCollatorForLanguageModeling(padding_free=True)`, what TRL 1.16's
best-fit-decreasing packing uses) and scored through TRL's fused LM head with `use_cache=False`, as
`SFTTrainer.compute_loss` does. Float32 throughout; tolerance 1e-5 on each token's log-probability (the differences
seen are summation-order noise, below 1e-6).
"""

from __future__ import annotations

import pytest

from runner.plan import resolve
from runner.plan.architecture import _raw_table
from runner.plan.modeltypes import PACKING_CONTAMINATES, PACKING_PROVEN, PACKING_PROVEN_ON
from schemas import load

from conftest import ROOT

TOLERANCE = 1e-5
SFT = ROOT / "recipes" / "tiny" / "sft-lora.yaml"

SMALL = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=256,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    initializer_range=0.2,  # large enough that attention across documents shows in the loss
)
CONFIGS = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16},
    "phi3": {},
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=256),
    "gpt_neox": {},
    "bloom": dict(n_layer=2, n_head=4),
    "falcon": {},
    "mamba": dict(state_size=8),
}
ATTENTIONS = ("eager", "sdpa", "flex_attention")  # flash_attention_2 needs CUDA: benchmarks/gpu_step.py --check-packing


def _model(model_type: str, attention: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**SMALL, **CONFIGS[model_type]})
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32).eval()
    add_fused_lm_head(model)
    return model


def _supported(model_type: str) -> list[str]:
    """The attention implementations transformers offers for this model type (eager always)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cls = AutoModelForCausalLM._model_mapping[type(AutoConfig.for_model(model_type))]
    offered = {"sdpa": cls._supports_sdpa, "flex_attention": cls._supports_flex_attn}
    return ["eager", *(a for a in ATTENTIONS[1:] if offered[a])]


def log_probs(model, batch: dict):
    """Log-probabilities of the trained tokens (next-token labels not -100), through TRL's fused LM head."""
    import torch

    with torch.no_grad():
        out = model(**batch, use_cache=False, fused_lm_head=True)
    return out.log_probs[out.label_mask]


def packed_vs_alone(model, documents: list[list[int]]) -> float:
    """The largest difference between a token's log-probability in the packed row and in its document alone."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    packed = collator([{"input_ids": d} for d in documents])
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed  # one row, documents by position
    alone = []
    for d in documents:
        one = collator([{"input_ids": d}])
        alone.append(log_probs(model, one))
    together = log_probs(model, packed)
    alone_t = torch.cat(alone)
    assert together.shape == alone_t.shape, (together.shape, alone_t.shape)
    return float((together - alone_t).abs().max())


def _documents() -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, 256, (n,), generator=g).tolist() for n in (9, 17, 6, 23, 12)]


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_packed_rows_keep_documents_apart_exactly_where_the_plan_says(model_type):
    """Each model type the plan knows: in the proven table, every attention it offers gives each document its own
    loss; in the refused table, the documents visibly attend to each other (so the refusal is still needed)."""
    assert (model_type in PACKING_PROVEN) != (model_type in PACKING_CONTAMINATES), "in exactly one table"
    import torch

    documents = _documents()
    # flex attention runs uncompiled: the block mask is the one transformers builds from the position ids, evaluated
    # by torch's eager flex attention; compiling the fused kernel for each model type cost ~30-50 s on 2 cores
    with torch.compiler.set_stance("force_eager"):
        diffs = {a: packed_vs_alone(_model(model_type, a), documents) for a in _supported(model_type)}
    if model_type in PACKING_PROVEN:
        assert all(d < TOLERANCE for d in diffs.values()), diffs
    else:
        assert all(d > 100 * TOLERANCE for d in diffs.values()), diffs


def test_the_tables_were_proven_on_the_locked_transformers():
    """The tables are measured (above) on the installed transformers; the plan names the release it was proven on,
    which is the one the lock pins and the suite installs (scripts/update-lock.sh moves both)."""
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("transformers==")]
    assert pins == [f"transformers=={PACKING_PROVEN_ON}"], pins
    from runner.plan.probe import probe_packages

    assert probe_packages()["transformers"] == PACKING_PROVEN_ON, "the suite runs on another transformers than the lock"
    (d,) = [d for d in _plan("training.packing=true").decisions if d.what == "packing"]
    assert f"(proven for llama on transformers {PACKING_PROVEN_ON})" in d.why


def test_every_shipped_architecture_is_in_one_packing_table():
    types = {entry["model_type"] for entry in _raw_table().values()}
    assert types <= PACKING_PROVEN | set(PACKING_CONTAMINATES), types - PACKING_PROVEN - set(PACKING_CONTAMINATES)
    assert set(CONFIGS) == PACKING_PROVEN | set(PACKING_CONTAMINATES)  # and this test measures every one


def _runner_batch(monkeypatch, overrides: list[str]):
    """The trainer our runner builds from the tiny SFT recipe, and a batch its collator makes of six rows."""
    monkeypatch.chdir(ROOT)
    from runner.run.trainer import build_trainer

    plan = resolve(load(SFT, ["training.max_steps=1", "training.global_batch_size=6", *overrides]).recipe, {})
    assert plan.ok, plan.problems
    trainer = build_trainer(plan)
    rows = [trainer.train_dataset[i] for i in range(6)]
    return trainer, rows, trainer.data_collator(rows)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_runners_packed_batches_train_each_document_on_its_own(monkeypatch, attention):
    """Through the runner: the plan's trainer packs (TRL's best-fit decreasing), its collator makes one padding-free
    row of several documents, and the adapted model scores each document's trained tokens as it does alone."""
    import torch

    overrides = ["training.packing=true", "training.max_length=256", f"model.attention={attention}"]
    trainer, rows, batch = _runner_batch(monkeypatch, overrides)
    model = trainer.model.eval()
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) > len(rows), "packed rows hold several documents each"
    together = log_probs(model, batch)
    bounds = [*starts, batch["input_ids"].shape[1]]
    alone = []
    for a, b in zip(bounds, bounds[1:]):
        one = {
            "input_ids": batch["input_ids"][:, a:b],
            "labels": batch["labels"][:, a:b],
            "position_ids": batch["position_ids"][:, a:b],
        }
        alone.append(log_probs(model, one))
    assert float((together - torch.cat(alone)).abs().max()) < TOLERANCE


@pytest.mark.e2e  # trains, in this process
def test_padding_free_without_packing_truncates_and_concatenates(monkeypatch, tmp_path):
    overrides = ["training.padding_free=true", "training.max_length=48", f"output.dir={tmp_path / 'run'}"]
    trainer, rows, batch = _runner_batch(monkeypatch, overrides)
    assert max(len(r["input_ids"]) for r in rows) <= 48  # truncated to max_length before concatenation
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert int((batch["position_ids"][0] == 0).sum()) == len(rows)
    import math

    result = trainer.train()  # one step on those rows
    assert result.global_step == 1 and math.isfinite(result.training_loss)


def _plan(*overrides: str, recipe=SFT):
    return resolve(load(recipe, list(overrides)).recipe, {})


@pytest.mark.parametrize(
    "recipe,model_type",
    [
        (ROOT / "recipes" / "bloom-1b1-lima-sft-full.yaml", "bloom"),
        (ROOT / "recipes" / "mamba-1.4b-lima-sft-qlora.yaml", "mamba"),
    ],
)
def test_the_plan_refuses_packing_where_documents_would_mix(recipe, model_type):
    plan = _plan("training.packing=true", recipe=recipe)
    (problem,) = [p for p in plan.problems if p.rule == "packing-contaminates"]
    assert problem.path == ("training", "packing") and "attend to each other" in problem.message
    assert PACKING_CONTAMINATES[model_type] in problem.message
    padding_free = _plan("training.padding_free=true", recipe=recipe)
    assert [p.path for p in padding_free.problems if p.rule == "packing-contaminates"] == [("training", "padding_free")]


def test_the_plan_says_how_packed_documents_are_kept_apart():
    plan = _plan("training.packing=true")
    (d,) = [d for d in plan.decisions if d.what == "packing"]
    assert "block-diagonal mask for sdpa" in d.why and plan.resolved["training"]["padding_free"] is True
    assert plan.trainer["args"]["packing"] is True
    seventy = resolve(load(ROOT / "recipes" / "llama3-70b-sft-qlora-zero3.yaml").recipe, {"flash_attn": "2.8.3"})
    assert "variable-length kernel" in next(d.why for d in seventy.decisions if d.what == "packing")
    unpacked = _plan()
    assert unpacked.resolved["training"]["padding_free"] is False
    assert not [d for d in unpacked.decisions if d.what in ("packing", "padding-free")]


def test_an_unverified_model_type_is_a_warning():
    from runner.plan.architecture import Architecture
    from runner.plan.capabilities import decide_padding_free

    recipe = load(SFT, ["training.packing=true"]).recipe
    arch = Architecture("x", "some_new_type", 64, 2, 256)
    problems, decisions = [], []
    assert decide_padding_free(recipe, recipe.hardware.resolved_profile(), arch, "sdpa", decisions, problems) is True
    (p,) = problems
    assert p.severity == "warning" and p.rule == "packing-unverified" and "some_new_type" in p.message


def test_packed_sdpa_rows_cost_a_mask_of_the_whole_row():
    """With padding-free rows sdpa's mask spans the concatenated row: the estimate grows with the micro batch."""
    base = ["training.micro_batch_size=4", "training.global_batch_size=16", "training.gradient_checkpointing=false"]
    recipe = ROOT / "recipes" / "llama2-7b-pretrain-qlora.yaml"
    unpacked = _plan(*base, "training.packing=false", "hardware.profile=a100-80gb", recipe=recipe)
    packed = _plan(*base, "training.packing=true", "hardware.profile=a100-80gb", recipe=recipe)
    grown = packed.memory["breakdown"]["activations"] - unpacked.memory["breakdown"]["activations"]
    # 32 layers × 4,096 tokens × 2 bytes × (4,096 − 1,024) more keys per token = 0.75 GiB
    assert grown == pytest.approx(32 * 4096 * 2 * (4096 - 1024) / 2**30, rel=1e-6)


def test_liger_kernels_are_a_gpu_decision():
    cpu = _plan("training.kernels=liger")
    (p,) = [p for p in cpu.problems if p.rule == "kernels-need-gpu"]
    assert p.path == ("training", "kernels") and "no GPU" in p.message
    assert (
        next(d for d in _plan().decisions if d.what == "kernels").why == "CPU: Liger's kernels are Triton GPU kernels"
    )
    gpu = ["hardware.profile=a100-80gb"]
    recipe = ROOT / "recipes" / "llama31-8b-chat-sft-lora.yaml"
    with_liger = resolve(load(recipe, gpu).recipe, {"liger_kernel": "0.8.5"})
    assert with_liger.trainer["args"]["use_liger_kernel"] is True
    assert next(d.value for d in with_liger.decisions if d.what == "kernels") == "liger"
    without = resolve(load(recipe, gpu).recipe, {})
    assert "use_liger_kernel" not in without.trainer["args"]
    assert "pip install liger-kernel" in next(d.why for d in without.decisions if d.what == "kernels")
    # Liger keeps norm inputs in bf16 and SwiGLU's gate and up only: less activation memory than without
    assert with_liger.memory["breakdown"]["activations"] < without.memory["breakdown"]["activations"]
    gpt2 = _plan(
        "training.kernels=liger", "hardware.profile=a100-80gb", recipe=ROOT / "recipes" / "gpt2-hh-rlhf-dpo-lora.yaml"
    )
    assert [p.rule for p in gpt2.problems if p.rule.startswith("kernels")] == ["kernels-unsupported-model"]
