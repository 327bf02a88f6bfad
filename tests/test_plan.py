"""Resolution: decisions, the memory estimator against DeepSpeed's, generated files against their parsers."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import types
import unittest.mock as mock

import pytest
import yaml

from runner.plan import resolve
from runner.plan.architecture import find_architecture
from runner.plan.memory import GiB, deepspeed_model_states
from schemas import Recipe

from conftest import example, set_path

NO_PACKAGES: dict = {}


def recipe(changes: dict | None = None, base: dict | None = None) -> Recipe:
    data = copy.deepcopy(base) if base is not None else example()
    for k, v in (changes or {}).items():
        set_path(data, k, v)
    return Recipe.model_validate(data)


FULL_70B = {
    "version": 1,
    "name": "llama3-70b-full",
    "model": {"name_or_path": "meta-llama/Meta-Llama-3-70B"},
    "adapter": {"kind": "full"},
    "objective": {"kind": "sft"},
    "datasets": {"train": [{"source": "hf:HuggingFaceH4/ultrachat_200k", "split": "train_sft", "format": "ultrachat"}]},
    "training": {"learning_rate": 1.0e-5, "global_batch_size": 64, "max_length": 2048},
    "hardware": {"profile": "a100-80gb", "gpus_per_node": 8, "nodes": 1},
}


# --- the estimator against DeepSpeed's own ------------------------------------------------


@pytest.mark.parametrize("params", [124_000_000, 8_030_261_248, 70_553_706_496])
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (8, 1), (8, 2)])
def test_zero2_model_states_match_deepspeed(params, gpus, nodes):
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for offload in (False, True):
        _, ds_gpu = estimate_zero2_model_states_mem_needs(params, gpus, nodes, cpu_offload=offload)
        ours = deepspeed_model_states(params, 2, gpus * nodes, "optimizer" if offload else "none", largest_layer=0)
        assert int(sum(ours.values())) == pytest.approx(ds_gpu, abs=2)


@pytest.mark.parametrize("name", ["gpt2", "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B"])
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (8, 1), (8, 2)])
def test_zero3_model_states_match_deepspeed(name, gpus, nodes):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    arch, _ = find_architecture(name)
    p, ll = arch.total_params, arch.largest_layer_params
    for offload, cpu_offload, cpu_params in (("none", False, False), ("optimizer", True, False), ("all", True, True)):
        _, ds_gpu, _ = estimate_zero3_model_states_mem_needs(
            p, ll, gpus, nodes, cpu_offload=cpu_offload, cpu_offload_params=cpu_params
        )
        ours = deepspeed_model_states(p, 3, gpus * nodes, offload, ll)
        assert int(sum(ours.values())) == pytest.approx(ds_gpu, abs=2)


def test_parameter_counts_from_the_table_and_from_config_json(tmp_path):
    counts = {
        "meta-llama/Meta-Llama-3-8B": 8.03e9,
        "meta-llama/Meta-Llama-3-70B": 70.55e9,
        "meta-llama/Llama-2-7b-hf": 6.74e9,
        "google/gemma-2b": 2.51e9,
        "gpt2": 124.4e6,
        "state-spaces/mamba-1.4b-hf": 1.37e9,
    }
    for name, expected in counts.items():
        arch, _ = find_architecture(name)
        assert arch.total_params == pytest.approx(expected, rel=0.01), name
    cfg = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    arch, source = find_architecture(str(tmp_path))
    assert "config.json" in source
    # embeddings 256*64, per layer q 64*64 + k,v 2*64*32 + o 64*64 + mlp 3*64*128 + norms 2*64, final norm 64
    assert arch.total_params == 256 * 64 + 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64


def test_parameter_count_matches_transformers_on_a_local_config(tmp_path):
    """The formula agrees with the number of parameters transformers itself builds (random weights, no download)."""
    import transformers  # the `train` extra; a missing install fails here rather than skipping

    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        tie_word_embeddings=False,
    )
    cfg.save_pretrained(tmp_path)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    arch, _ = find_architecture(str(tmp_path))
    assert arch.total_params == sum(p.numel() for p in model.parameters())


def test_memory_components_behave():
    plan = resolve(recipe(), NO_PACKAGES)
    b = plan.memory["breakdown"]
    assert 5.0 < b["weights"] < 6.0  # 4-bit linear layers plus bf16 embeddings and head of Llama-3-8B
    assert b["reference_model"] == 0  # DPO with LoRA uses the adapter-free model as reference
    with_gc = plan.memory["breakdown"]["activations"]
    no_gc = resolve(recipe({"training.gradient_checkpointing": False}), NO_PACKAGES).memory["breakdown"]["activations"]
    assert no_gc > 4 * with_gc
    full = resolve(
        recipe({"adapter": {"kind": "full"}, "quantization.method": "none", "hardware.profile": "h200-141gb"}),
        NO_PACKAGES,
    )
    assert full.memory["breakdown"]["reference_model"] == pytest.approx(8.03e9 * 2 / GiB, rel=0.01)
    arch, _ = find_architecture("meta-llama/Meta-Llama-3-8B")
    # DPOTrainer scores through TRL's fused LM head: no logits, one tile of 4096 tokens × 32768 entries in bf16
    assert b["logits"] == 0 and b["temporaries"] >= 4096 * 32768 * 2 / GiB
    # SimPO (the experimental CPOTrainer) takes the model's logits: chosen and rejected (2) × micro 2 × 1024 tokens
    # × 128256 vocab × (2 + 4 + 4) bytes at the end of the forward pass
    simpo = resolve(recipe({"objective": {"kind": "simpo"}}), NO_PACKAGES)
    assert simpo.micro_batch_size == 2 and simpo.memory["peak_phase"] == "start of backward"
    assert simpo.memory["breakdown"]["logits"] == pytest.approx(2 * 2 * 1024 * arch.vocab_size * 10 / GiB, rel=0.01)


# --- the decisions the issue names ----------------------------------------------------------


def test_8b_qlora_dpo_on_one_24gb_gpu_needs_no_deepspeed():
    plan = resolve(recipe(), NO_PACKAGES)
    assert plan.ok and plan.deepspeed is None and plan.zero is None
    assert plan.precision == "bf16" and plan.attention == "sdpa"
    assert (plan.micro_batch_size, plan.gradient_accumulation_steps) == (2, 4)
    assert plan.memory["fits"] and plan.memory["per_gpu_gb"] < plan.memory["available_gb"]
    assert plan.accelerate["distributed_type"] == "NO" and plan.accelerate["mixed_precision"] == "bf16"
    assert plan.quantization["args"]["bnb_4bit_quant_storage"] == "uint8"


def test_flash_attention_when_installed_on_ampere():
    assert resolve(recipe(), {"flash_attn": "2.8.3"}).attention == "flash_attention_2"
    assert (
        resolve(
            recipe({"hardware.profile": "t4-16gb", "model.dtype": "auto", "quantization.compute_dtype": "auto"}),
            {"flash_attn": "2.8.3"},
        ).attention
        == "sdpa"
    )
    assert (
        resolve(
            recipe({"hardware.profile": "cpu", "model.dtype": "auto", "quantization.compute_dtype": "auto"}),
            {"flash_attn": "2.8.3"},
        ).attention
        == "sdpa"
    )


def test_70b_full_finetune_on_8xa100_refuses_with_numbers():
    plan = resolve(Recipe.model_validate(FULL_70B), NO_PACKAGES)
    (problem,) = [p for p in plan.problems if p.rule == "memory-fit"]
    assert problem.path == ("hardware", "profile")
    assert "GiB per GPU" in problem.message and "79.0 GiB" in problem.message and "CPU memory" in problem.message
    assert "lora" in problem.message and "more GPUs" in problem.message


def test_70b_full_finetune_resolves_to_zero3_with_offload_when_cpu_memory_allows():
    data = copy.deepcopy(FULL_70B)
    data["hardware"]["cpu_ram_gb"] = 2048
    plan = resolve(Recipe.model_validate(data), NO_PACKAGES)
    assert plan.ok, plan.problems
    assert plan.zero == 3 and plan.offload in ("optimizer", "all")
    assert plan.deepspeed["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert plan.deepspeed["optimizer"]["params"]["lr"] == 1.0e-5
    assert plan.memory["offload_cpu_gb_per_node"] <= 2048


def test_70b_qlora_on_8xa100_uses_zero3_with_matching_quant_storage():
    data = copy.deepcopy(FULL_70B)
    data.update(adapter={"kind": "lora", "r": 32, "alpha": 64}, quantization={"method": "bnb-4bit"})
    data["hardware"].update(zero=3)
    plan = resolve(Recipe.model_validate(data), NO_PACKAGES)
    assert plan.ok and plan.zero == 3
    assert (
        plan.quantization["args"]["bnb_4bit_quant_storage"]
        == "bfloat16"
        == plan.quantization["args"]["bnb_4bit_compute_dtype"]
    )
    assert any(d.what == "bnb_4bit_quant_storage" for d in plan.decisions)


def test_two_nodes_of_eight_gpus_argv_and_slurm():
    from runner.plan.launchfiles import slurm_script

    data = copy.deepcopy(FULL_70B)
    data["hardware"].update(nodes=2, cpu_ram_gb=2048)
    plan = resolve(Recipe.model_validate(data), NO_PACKAGES)
    argv = plan.launch
    assert plan.world_size == 16 and plan.accelerate["num_processes"] == 16 and plan.accelerate["num_machines"] == 2
    for flag, value in (
        ("--num_machines", "2"),
        ("--machine_rank", "${MACHINE_RANK}"),
        ("--main_process_ip", "${MAIN_PROCESS_IP}"),
        ("--deepspeed_multinode_launcher", "standard"),
    ):
        assert argv[argv.index(flag) + 1] == value
    assert "--main_process_port" in argv
    assert argv[-3:] == ["-m", "runner.run.train", "outputs/llama3-70b-full/launch/plan.json"]
    script = slurm_script(name="x", argv=argv, nodes=2, gpus_per_node=8, launch_dir=plan.launch_dir)
    assert (
        "#SBATCH --nodes=2" in script
        and "#SBATCH --ntasks-per-node=1" in script
        and "#SBATCH --gpus-per-node=8" in script
    )
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in script
    assert "srun" in script and "--machine_rank $SLURM_NODEID" in script


@pytest.mark.parametrize("zero", [None, 3])
def test_one_node_of_several_processes_lets_accelerate_pick_a_free_port(tmp_path, zero):
    """Two runs on one machine must not meet on one rendezvous port: the config says 0, which the installed
    accelerate turns into a free port at each launch (its own parser and launcher code, as `accelerate launch`)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    data = copy.deepcopy(FULL_70B)
    if zero is None:  # plain data parallel: an 8B LoRA that fits each GPU
        data.pop("quantization", None)
        data["model"]["name_or_path"] = "meta-llama/Meta-Llama-3-8B"
        data["adapter"] = {"kind": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"}
    plan = resolve(Recipe.model_validate(data), NO_PACKAGES)
    assert plan.world_size == 8 and plan.accelerate["num_machines"] == 1 and (plan.deepspeed is None) == (zero is None)
    assert plan.accelerate["main_process_port"] == 0 and "--main_process_port" not in plan.launch
    config = tmp_path / "accelerate.yaml"
    config.write_text(yaml.safe_dump(plan.accelerate))
    ports = []
    for _ in range(2):
        args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "runner.run.train", "x"])
        args, defaults, _ = _validate_launch_command(args)
        assert args.main_process_port == 0
        if zero is None:
            prepare_multi_gpu_env(args)
        else:  # what accelerate's launch_command sets before its DeepSpeed launcher
            args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
            prepare_deepspeed_cmd_env(args)
        ports.append(int(args.master_port))
    assert all(p > 0 for p in ports), ports


@pytest.mark.parametrize("profile", ["v100-32gb", "t4-16gb"])
def test_fp16_fallback_on_pre_ampere(profile):
    plan = resolve(
        recipe({"hardware.profile": profile, "model.dtype": "auto", "quantization.compute_dtype": "auto"}), NO_PACKAGES
    )
    assert plan.precision == "fp16" and plan.dtype == "float16"
    assert plan.trainer["args"]["fp16"] is True and plan.trainer["args"]["bf16"] is False
    assert plan.quantization["args"]["bnb_4bit_compute_dtype"] == "float16"
    full = resolve(
        recipe(
            {
                "hardware.profile": profile,
                "model.dtype": "auto",
                "adapter": {"kind": "full"},
                "quantization.method": "none",
                "model.name_or_path": "gpt2",
            }
        ),
        NO_PACKAGES,
    )
    assert full.dtype == "float32"  # fp16 autocast needs float32 master weights


def test_cpu_plan_is_fp32_without_deepspeed():
    plan = resolve(
        recipe(
            {
                "hardware.profile": "cpu",
                "model.dtype": "auto",
                "quantization.compute_dtype": "auto",
                "model.name_or_path": "gpt2",
            }
        ),
        NO_PACKAGES,
    )
    assert plan.precision == "fp32" and plan.deepspeed is None and plan.trainer["args"]["use_cpu"] is True
    assert plan.accelerate["use_cpu"] is True and plan.accelerate["distributed_type"] == "NO"


def test_auto_micro_batch_is_the_largest_power_of_two_that_fits():
    small = resolve(
        recipe(
            {
                "training.micro_batch_size": "auto",
                "training.global_batch_size": 64,
                "training.max_length": 128,
                "model.name_or_path": "gpt2",
            }
        ),
        NO_PACKAGES,
    )
    assert small.micro_batch_size == 64 and small.gradient_accumulation_steps == 1
    big = resolve(
        recipe({"training.micro_batch_size": "auto", "training.global_batch_size": 64, "training.max_length": 4096}),
        NO_PACKAGES,
    )
    assert big.micro_batch_size < 64 and big.micro_batch_size * big.gradient_accumulation_steps == 64
    assert big.memory["fits"]
    doubled = resolve(
        recipe(
            {
                "training.micro_batch_size": big.micro_batch_size * 2,
                "training.global_batch_size": 64,
                "training.max_length": 4096,
            }
        ),
        NO_PACKAGES,
    )
    assert not doubled.memory["fits"]


def test_gradient_checkpointing_auto_only_when_needed():
    small = resolve(recipe({"training.gradient_checkpointing": "auto", "model.name_or_path": "gpt2"}), NO_PACKAGES)
    assert small.gradient_checkpointing is False
    big = resolve(recipe({"training.gradient_checkpointing": "auto", "training.max_length": 8192}), NO_PACKAGES)
    assert big.gradient_checkpointing is True


def test_unknown_model_is_a_warning_not_a_guess():
    plan = resolve(recipe({"model.name_or_path": "someone/unknown-model"}), NO_PACKAGES)
    assert plan.ok and plan.memory["per_gpu_gb"] is None
    assert [p.rule for p in plan.problems] == ["memory-unknown"]


def test_warmup_ratio_becomes_a_fractional_warmup_steps():
    plan = resolve(recipe(), NO_PACKAGES)
    assert plan.trainer["args"]["warmup_steps"] == 0.1
    assert plan.trainer["args"]["activation_checkpointing"] is True


# --- generated arguments are accepted by the libraries ----------------------------------------

ALL_OBJECTIVES = {
    "sft": ({"objective": {"kind": "sft"}}, "messages"),
    "pretrain": ({"objective": {"kind": "pretrain"}}, "text"),
    "dpo": ({"objective": {"kind": "dpo", "loss": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}}, "hh-rlhf"),
    "orpo": ({"objective": {"kind": "orpo"}}, "preference"),
    "kto": ({"objective": {"kind": "kto"}}, "unpaired-preference"),
    "simpo": ({"objective": {"kind": "simpo", "beta": 1.0, "gamma": 1.0}}, "preference"),
    "cpo": ({"objective": {"kind": "cpo"}}, "preference"),
    "reward": ({"objective": {"kind": "reward"}}, "preference"),
    "grpo": ({"objective": {"kind": "grpo", "reward_model": "outputs/rm", "num_generations": 4}}, "prompt-only"),
    "rloo": (
        {"objective": {"kind": "rloo", "reward_functions": ["trl.rewards:think_format_reward"], "num_generations": 4}},
        "prompt-only",
    ),
}


def _import(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("kind", sorted(ALL_OBJECTIVES))
def test_trainer_args_build_the_trl_config(kind, tmp_path):
    changes, fmt = ALL_OBJECTIVES[kind]
    r = recipe(
        {
            **changes,
            "datasets.train.0.format": fmt,
            "datasets.eval.0.format": fmt,
            "hardware.profile": "cpu",
            "model.dtype": "auto",
            "quantization.compute_dtype": "auto",
            "model.name_or_path": "gpt2",
        }
    )
    plan = resolve(r, NO_PACKAGES)
    trainer_cls, config_cls = _import(plan.trainer["class"]), _import(plan.trainer["config_class"])
    assert trainer_cls.__name__.endswith("Trainer")
    args = dict(plan.trainer["args"], output_dir=str(tmp_path))
    names = {f.name for f in dataclasses.fields(config_cls)}
    assert set(args) <= names, set(args) - names
    config = config_cls(**args)
    assert config.per_device_train_batch_size == plan.micro_batch_size
    assert config.gradient_accumulation_steps == plan.gradient_accumulation_steps
    assert config.learning_rate == r.training.learning_rate


ADAPTERS = {
    "lora": {"kind": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
    "dora": {"kind": "dora", "ephemeral_gpu_offload": True},
    "prefix": {"kind": "prefix", "num_virtual_tokens": 30, "prefix_projection": True},
    "prompt": {"kind": "prompt", "init": "text", "init_text": "Answer the question:"},
    "p-tuning": {"kind": "p-tuning"},
    "ia3": {"kind": "ia3"},
}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_peft_args_build_the_peft_config(kind):
    r = recipe({"adapter": ADAPTERS[kind], "quantization.method": "none", "training.gradient_checkpointing": "auto"})
    plan = resolve(r, NO_PACKAGES)
    from runner.common.models import peft_config

    config = peft_config(plan.peft)
    assert type(config).__name__ == plan.peft["class"].rsplit(".", 1)[1]
    assert str(config.task_type.value if hasattr(config.task_type, "value") else config.task_type) == "CAUSAL_LM"
    if kind == "dora":
        assert config.use_dora and config.runtime_config.ephemeral_gpu_offload
    if kind == "prefix":
        assert plan.gradient_checkpointing is False


@pytest.mark.parametrize("changes", [{}, {"quantization.method": "bnb-8bit"}, {"hardware.zero": 3}])
def test_quantization_args_build_bitsandbytes_config(changes):
    import torch

    from runner.common.models import quantization_config

    plan = resolve(recipe(changes), NO_PACKAGES)
    config = quantization_config(plan.quantization)
    assert config.load_in_4bit or config.load_in_8bit
    if config.load_in_4bit:
        assert config.bnb_4bit_compute_dtype == torch.bfloat16
        assert config.bnb_4bit_quant_storage == (torch.bfloat16 if plan.zero == 3 else torch.uint8)


# --- DeepSpeed JSON and accelerate config --------------------------------------------------------

DS_CASES = [
    {"hardware.zero": 0},
    {"hardware.zero": 1, "hardware.gpus_per_node": 4},
    {"hardware.zero": 2, "hardware.gpus_per_node": 4, "hardware.offload": "optimizer"},
    {"hardware.zero": 3, "hardware.gpus_per_node": 8, "hardware.nodes": 2, "training.global_batch_size": 64},
    {"hardware.zero": 3, "hardware.offload": "all", "hardware.gpus_per_node": 2},
    {
        "hardware.zero": 2,
        "hardware.profile": "v100-32gb",
        "model.dtype": "float16",
        "quantization.compute_dtype": "float16",
        "hardware.gpus_per_node": 2,
    },
]


@pytest.mark.parametrize("changes", DS_CASES)
def test_generated_deepspeed_config_is_accepted_by_deepspeed(changes):
    import deepspeed.comm as dist
    from deepspeed.runtime.config import DeepSpeedConfig

    plan = resolve(recipe(changes), NO_PACKAGES)
    assert plan.deepspeed is not None
    text = json.dumps(plan.deepspeed)
    assert '"auto"' not in text
    with (
        mock.patch.object(dist, "get_world_size", return_value=plan.world_size),
        mock.patch.object(dist, "get_rank", return_value=0),
    ):
        parsed = DeepSpeedConfig(copy.deepcopy(plan.deepspeed))
    assert parsed.world_size == plan.world_size
    assert parsed.train_batch_size == plan.recipe.training.global_batch_size
    assert parsed.train_micro_batch_size_per_gpu == plan.micro_batch_size
    assert parsed.gradient_accumulation_steps == plan.gradient_accumulation_steps
    assert parsed.zero_optimization_stage == plan.zero
    assert parsed.gradient_clipping == plan.recipe.training.max_grad_norm


@pytest.mark.parametrize("changes", DS_CASES)
def test_deepspeed_config_matches_the_training_arguments(changes):
    """transformers' DeepSpeed integration refuses any mismatch between the JSON and the TrainingArguments."""
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    plan = resolve(recipe(changes), NO_PACKAGES)
    defaults = {
        f.name: f.default for f in dataclasses.fields(TrainingArguments) if f.default is not dataclasses.MISSING
    }
    args = types.SimpleNamespace(**{**defaults, **plan.trainer["args"], "world_size": plan.world_size})
    hf = HfTrainerDeepSpeedConfig(copy.deepcopy(plan.deepspeed))
    hf.trainer_config_process(args)
    assert hf.mismatches == []


def test_accelerate_config_with_deepspeed_file_repeats_nothing():
    plan = resolve(recipe({"hardware.zero": 3, "hardware.gpus_per_node": 8}), NO_PACKAGES)
    acc = plan.accelerate
    assert acc["distributed_type"] == "DEEPSPEED" and "mixed_precision" not in acc
    forbidden = {
        "gradient_accumulation_steps",
        "gradient_clipping",
        "zero_stage",
        "offload_optimizer_device",
        "offload_param_device",
        "zero3_save_16bit_model",
        "mixed_precision",
    }
    assert set(acc["deepspeed_config"]) == {"deepspeed_config_file", "zero3_init_flag"}
    assert not forbidden & set(acc["deepspeed_config"])
    assert acc["deepspeed_config"]["deepspeed_config_file"] == plan.trainer["args"]["deepspeed"]


def test_accelerate_config_is_read_by_accelerate(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    for changes in ({}, {"hardware.zero": 3, "hardware.gpus_per_node": 8}, {"hardware.gpus_per_node": 4}):
        plan = resolve(recipe(changes), NO_PACKAGES)
        path = tmp_path / "accelerate.yaml"
        path.write_text(yaml.safe_dump(plan.accelerate))
        config = load_config_from_file(str(path))
        assert config.num_processes == plan.world_size
        assert str(config.distributed_type).split(".")[-1] == plan.accelerate["distributed_type"]


MAMBA_LORA = {
    "version": 1,
    "name": "mamba-lora",
    "model": {"name_or_path": "state-spaces/mamba-1.4b-hf"},
    "adapter": {"kind": "lora", "target_modules": ["in_proj", "x_proj"]},
    "objective": {"kind": "sft"},
    "datasets": {"train": [{"source": "jsonl:data.jsonl", "format": "text"}]},
    "training": {"learning_rate": 2.0e-4, "global_batch_size": 16, "max_length": 1024},
    "hardware": {"profile": "rtx4090-24gb"},
}


def test_lora_on_a_mamba_models_output_projection_is_refused_before_launch():
    # PEFT refuses LoRA on Mamba's out_proj and conv1d (`_check_lora_target_modules_mamba`) when the training
    # process builds the adapter; the plan says so first
    base = MAMBA_LORA
    refused = resolve(recipe({"adapter.target_modules": ["in_proj", "x_proj", "out_proj"]}, base), NO_PACKAGES)
    (problem,) = [p for p in refused.problems if p.rule == "mamba-lora-targets"]
    assert problem.path == ("adapter", "target_modules") and "out_proj" in problem.message
    assert "target in_proj and x_proj" in problem.message
    untrained = resolve(recipe({"adapter.target_modules": ["in_proj", "dt_proj"]}, base), NO_PACKAGES)
    (problem,) = [p for p in untrained.problems if p.rule == "mamba-lora-targets"]
    assert "dt_proj never trains" in problem.message
    accepted = resolve(recipe({"adapter.target_modules": ["in_proj", "x_proj"]}, base), NO_PACKAGES)
    assert [p.rule for p in accepted.problems if p.severity == "error"] == []
    import transformers
    from peft import LoraConfig, get_peft_model

    cfg = transformers.MambaConfig(hidden_size=16, num_hidden_layers=1, vocab_size=32, state_size=4)
    with pytest.raises(ValueError, match="out_proj"):  # what the plan prevents
        get_peft_model(transformers.MambaForCausalLM(cfg), LoraConfig(target_modules=["in_proj", "out_proj"]))
    get_peft_model(transformers.MambaForCausalLM(cfg), LoraConfig(target_modules=["in_proj", "x_proj"]))


def test_a_quantized_mamba_keeps_dt_proj_unquantized():
    import tempfile

    import torch
    import transformers

    base = {**MAMBA_LORA, "quantization": {"method": "bnb-4bit"}}
    refused = resolve(recipe(base=base), NO_PACKAGES)
    (problem,) = [p for p in refused.problems if p.rule == "mamba-quantized-dt-proj"]
    assert problem.path == ("quantization", "skip_modules") and "skip_modules: [dt_proj, lm_head]" in problem.message
    accepted = resolve(recipe({"quantization.skip_modules": ["dt_proj", "lm_head"]}, base), NO_PACKAGES)
    assert accepted.quantization["args"]["llm_int8_skip_modules"] == ["dt_proj", "lm_head"]
    assert [p.rule for p in accepted.problems if p.severity == "error"] == []
    # what the rule prevents, with bitsandbytes' CPU kernels: a 4-bit dt_proj fails at the first forward
    cfg = transformers.MambaConfig(hidden_size=32, num_hidden_layers=1, vocab_size=64, state_size=4)
    with tempfile.TemporaryDirectory() as d:
        transformers.MambaForCausalLM(cfg).save_pretrained(d)
        for skip, fails in ((None, True), (["dt_proj", "lm_head"], False)):
            q = transformers.BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=skip)
            model = transformers.AutoModelForCausalLM.from_pretrained(d, quantization_config=q, device_map={"": "cpu"})
            if fails:
                with pytest.raises(RuntimeError):
                    model(torch.zeros(1, 8, dtype=torch.long))
            else:
                assert model(torch.zeros(1, 8, dtype=torch.long)).logits.shape == (1, 8, 64)
