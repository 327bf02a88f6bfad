"""The training options most peers have: evaluations and saves per epoch, weights-only checkpoints, NEFTune, TF32,
data-processing workers, the distributed timeout, and continuing from a trained adapter.

Plan tests read the arguments; the run tests train the tiny model in this process and check what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.plan import resolve
from runner.run.preflight import check_output_dir, check_start_adapter
from schemas import load

from conftest import ROOT

SFT = ROOT / "recipes/tiny/sft-lora.yaml"
DPO = ROOT / "recipes/tiny/dpo-qlora.yaml"
EXAMPLE = ROOT / "recipes/llama3-dpo-qlora.yaml"


def targs(path: Path, *overrides: str) -> dict:
    return resolve(load(path, list(overrides)).recipe, {}).trainer["args"]


def test_per_epoch_schedules_become_fractions_of_the_run():
    args = targs(SFT, "training.eval_every=null", "training.evals_per_epoch=4", "training.epochs=3")
    assert args["eval_strategy"] == "steps" and args["eval_steps"] == pytest.approx(1 / 12)
    args = targs(SFT, "training.eval_every=null", "training.evals_per_epoch=1")
    assert args["eval_strategy"] == "epoch" and "eval_steps" not in args
    args = targs(SFT, "training.save_every=null", "training.saves_per_epoch=2", "training.epochs=1")
    assert args["save_strategy"] == "steps" and args["save_steps"] == pytest.approx(0.5)
    args = targs(SFT, "training.save_every=null")
    assert args["save_strategy"] == "epoch"


def test_tf32_on_ampere_unset_on_cpu_and_as_written():
    plan = resolve(load(EXAMPLE, ["hardware.profile=h100-80gb"]).recipe, {})
    assert plan.trainer["args"]["tf32"] is True
    assert any(d.what == "tf32" for d in plan.decisions) and plan.resolved["training"]["tf32"] is True
    assert "tf32" not in targs(SFT)  # CPU: PyTorch's default
    assert targs(EXAMPLE, "hardware.profile=h100-80gb", "training.tf32=false")["tf32"] is False


def test_timeout_workers_neftune_and_weights_only_checkpoints_reach_the_trainer():
    args = targs(
        SFT,
        "hardware.distributed_timeout_minutes=90",
        "datasets.num_proc=4",
        "objective.neftune_noise_alpha=5",
        "training.save_only_model=true",
    )
    assert args["ddp_timeout"] == 5400 and args["dataset_num_proc"] == 4
    assert args["neftune_noise_alpha"] == 5 and args["save_only_model"] is True
    assert targs(SFT)["ddp_timeout"] == 1800  # transformers' default, written out
    grpo = ROOT / "recipes/tiny/grpo-lora.yaml"
    assert "dataset_num_proc" not in targs(grpo, "datasets.num_proc=4")  # GRPOConfig has no such field


def test_resume_refused_when_checkpoints_hold_weights_only(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-8").mkdir(parents=True)
    from runner.common import rundir

    rundir.take(out)  # a run's directory: it wrote the checkpoints
    rundir.record_created(out, "checkpoint-*")
    recipe = load(SFT, [f"output.dir={out}", "training.save_only_model=true"]).recipe
    [problem] = check_output_dir(recipe, overwrite=False, resume=True)
    assert (
        problem.rule == "resume-weights-only"
        and "save_only_model" in problem.message
        and "--overwrite" in problem.message
    )
    assert check_output_dir(load(SFT, [f"output.dir={out}"]).recipe, overwrite=False, resume=True) == []


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A LoRA adapter of the tiny Llama with non-zero B matrices (as after training), r 16, alpha 32, all linear."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(ROOT / "assets/tiny-llama")
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("adapter") / "sft-adapter"
    peft_model.save_pretrained(path)
    return path


def lora_weights(model, adapter_name: str = "default") -> dict:
    return {
        name.replace(f".{adapter_name}.", "."): p.detach().clone()
        for name, p in model.named_parameters()
        if "lora_" in name and f".{adapter_name}." in name
    }


def test_start_from_checks_the_adapter_shape(adapter):
    plan = resolve(load(SFT, [f"adapter.start_from={adapter}"]).recipe, {})
    assert check_start_adapter(plan) == []
    assert any(d.what == "adapter start" for d in plan.decisions)
    [problem] = check_start_adapter(resolve(load(SFT, [f"adapter.start_from={adapter}", "adapter.r=8"]).recipe, {}))
    assert problem.field == "adapter.start_from" and problem.rule == "start-adapter-shape"
    assert "r 16 (the recipe's: 8)" in problem.message
    [problem] = check_start_adapter(resolve(load(SFT, [f"adapter.start_from={adapter}/nowhere"]).recipe, {}))
    assert problem.rule == "start-adapter-missing" and "does not exist" in problem.message


def test_a_hub_adapter_of_another_shape_is_refused_when_loaded(adapter):
    """The preflight reads only local adapters; the training process checks what it loaded the same way."""
    from transformers import AutoModelForCausalLM

    from runner.run.trainer import start_adapter

    plan = resolve(load(SFT, [f"adapter.start_from={adapter}", "adapter.r=8"]).recipe, {})
    with pytest.raises(ValueError, match=r"r 16 \(the recipe's: 8\)"):
        start_adapter(plan, AutoModelForCausalLM.from_pretrained(ROOT / "assets/tiny-llama"), str(adapter))


def test_sft_continues_from_the_adapter_and_dpo_refers_to_it(adapter, monkeypatch):
    from safetensors.torch import load_file

    from runner.run.trainer import build_trainer

    monkeypatch.chdir(ROOT)
    saved = load_file(adapter / "adapter_model.safetensors")
    assert any(float(t.abs().sum()) > 0 for k, t in saved.items() if "lora_B" in k)
    trainer = build_trainer(resolve(load(SFT, [f"adapter.start_from={adapter}"]).recipe, {}))
    start = lora_weights(trainer.model)
    assert len(start) == len(saved)
    assert start.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch_equal(start[name], tensor), name
    assert any(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" in n)

    # DPO from the SFT adapter: the policy starts there and a frozen copy of it is the reference
    trainer = build_trainer(resolve(load(DPO, [f"adapter.start_from={adapter}"]).recipe, {}))
    policy, reference = lora_weights(trainer.model), lora_weights(trainer.model, "ref")
    assert policy.keys() == reference.keys() and len(policy) == len(saved)
    for name in policy:
        assert torch_equal(policy[name], reference[name]), name
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if ".ref." in n)


def torch_equal(a, b) -> bool:
    import torch

    bf16 = torch.bfloat16 in (a.dtype, b.dtype)  # TRL trains a 4-bit model's adapter in bfloat16 (QLoRA)
    return torch.allclose(a.float(), b.float(), rtol=1e-2 if bf16 else 1e-6, atol=1e-3 if bf16 else 1e-7)


@pytest.mark.e2e  # trains, in this process
def test_a_run_evaluates_per_epoch_saves_weights_only_and_adds_noise(tmp_path, monkeypatch):
    """2 epochs of 8 steps, 2 evaluations per epoch, weights-only checkpoints, NEFTune, 2 formatting processes."""
    import torch
    from transformers import TrainerCallback

    from runner.run.trainer import build_trainer

    monkeypatch.chdir(ROOT)
    overrides = [
        f"output.dir={tmp_path / 'out'}",
        "datasets.train.0.limit=64",
        "datasets.eval.0.limit=8",
        "training.epochs=2",
        "training.eval_every=null",
        "training.evals_per_epoch=2",
        "training.eval_on_start=false",
        "training.save_every=null",
        "training.saves_per_epoch=1",
        "training.save_only_model=true",
        "objective.neftune_noise_alpha=5",
        "datasets.num_proc=2",
    ]
    noisy = []

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 1:  # the embeddings of the same ids differ in training mode: noise is added
                embed = model.get_input_embeddings()
                ids = torch.arange(8).unsqueeze(0)
                with torch.no_grad():
                    noisy.append(bool((embed(ids) - embed(ids)).abs().max() > 0))

    trainer = build_trainer(resolve(load(SFT, overrides).recipe, {}), callbacks=[Probe()])
    trainer.train()
    evals = [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert evals == [4, 8, 12, 16]
    checkpoints = sorted((tmp_path / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [c.name for c in checkpoints] == ["checkpoint-8", "checkpoint-16"]
    for c in checkpoints:
        assert (c / "adapter_model.safetensors").is_file()
        assert not (c / "optimizer.pt").exists() and not (c / "scheduler.pt").exists()
    assert noisy == [True]
    assert json.loads((checkpoints[-1] / "trainer_state.json").read_text())["global_step"] == 16
