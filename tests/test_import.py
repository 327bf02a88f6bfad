"""`recipe import`: configs written in Axolotl's, LLaMA-Factory's and TRL's documented formats become recipes that
validate and plan, train what the source would have trained, and report every source key.

The expected values below are the peers' semantics, written out: a key the source states, or the peer's own default
for one it leaves out (Axolotl's src/axolotl/utils/schemas, LLaMA-Factory's hparams, TRL's ModelConfig and config
classes, transformers' TrainingArguments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.plan import resolve
from schemas import load
from schemas.yamlsource import safe_load

from conftest import ROOT

FIX = ROOT / "tests" / "fixtures" / "import"
GPUS = 4

# fixture -> (tool, what the run must be: objective, learning rate, micro batch, accumulation, LoRA shape, loss...)
CASES = {
    "axolotl/qlora.yml": (
        "axolotl",
        {
            "class": "trl.SFTTrainer",
            "learning_rate": 2e-4,
            "micro": 2,
            "accumulation": 4,
            "lora": {"r": 32, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"},
            "args": {
                "lr_scheduler_type": "cosine",  # Axolotl's default
                "optim": "adamw_torch_fused",  # Axolotl's default
                "max_length": 512,  # Axolotl's sequence_len default
                "warmup_steps": 0.03,  # 3% of the steps
                "num_train_epochs": 4,
                "packing": True,
                "completion_only_loss": True,  # train_on_inputs false
                "tf32": False,
                "eval_strategy": "steps",
                "eval_steps": pytest.approx(1 / 16),  # 4 evaluations per epoch over 4 epochs
                "save_strategy": "epoch",
                "save_total_limit": 4,
            },
            "quantization": {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
            "zero": 3,
            "eval_fraction": 0.05,
        },
    ),
    "axolotl/dpo.yml": (
        "axolotl",
        {
            "class": "trl.DPOTrainer",
            "learning_rate": 5e-6,
            "micro": 1,
            "accumulation": 8,
            "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05},
            "args": {
                "beta": 0.1,
                "loss_type": ["sigmoid"],
                "max_length": 2048,
                "optim": "adamw_torch",
                "warmup_steps": 10,
            },
            "zero": 2,
            "offload": "optimizer",
        },
    ),
    "axolotl/simpo.yml": (
        "axolotl",
        {
            "class": "trl.experimental.cpo.CPOTrainer",
            "learning_rate": 1e-6,
            "micro": 2,
            "accumulation": 8,  # batch_size 16 / micro_batch_size 2
            "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"},
            "args": {"loss_type": "simpo", "beta": 0.1, "simpo_gamma": 0.5, "cpo_alpha": 1.0},  # CPOConfig's
        },
    ),
    "axolotl/chat.yml": (
        "axolotl",
        {
            "class": "trl.SFTTrainer",
            "learning_rate": 1e-4,
            "micro": 4,
            "accumulation": 2,
            "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "args": {
                "assistant_only_loss": False,  # train_on_inputs: true
                "completion_only_loss": False,
                "neftune_noise_alpha": 5,
                "ddp_timeout": 7200,
                "save_only_model": True,
                "dataset_num_proc": 4,
                "lr_scheduler_type": "constant",
            },
            "start_from": FIX / "axolotl" / "sft-adapter",
        },
    ),
    "llama-factory/lora_sft.yaml": (
        "llama-factory",
        {
            "class": "trl.SFTTrainer",
            "learning_rate": 1e-4,
            "micro": 1,
            "accumulation": 8,
            "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"},
            "args": {
                "lr_scheduler_type": "linear",  # transformers' default
                "max_length": 2048,  # cutoff_len default
                "warmup_steps": 0.1,
                "num_train_epochs": 3.0,
                "eval_strategy": "steps",
                "eval_steps": 500,
                "save_steps": 500,
                "logging_steps": 10,
                "dataset_num_proc": 16,
                "ddp_timeout": 24 * 3600,  # 180000000 s capped at a day
                "tf32": False,
            },
            "zero": 3,
            "eval_fraction": 0.1,
        },
    ),
    "llama-factory/qlora_dpo.yaml": (
        "llama-factory",
        {
            "class": "trl.DPOTrainer",
            "learning_rate": 5e-6,
            "micro": 2,
            "accumulation": 4,
            "lora": {
                "r": 16,
                "lora_alpha": 32,
                "lora_dropout": 0.0,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
            },
            "args": {"beta": 0.2, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5], "max_length": 1024},
            "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
            "attention": "flash_attention_2",
            "start_from": FIX / "axolotl" / "sft-adapter",
        },
    ),
    "llama-factory/orpo.yaml": (
        "llama-factory",
        {
            "class": "trl.experimental.orpo.ORPOTrainer",
            "learning_rate": 8e-6,
            "micro": 1,
            "accumulation": 16,
            "lora": None,
            "args": {"beta": 0.1, "num_train_epochs": 2.0, "max_length": 2048},
            "zero": 3,
            "offload": "all",
        },
    ),
    "trl/sft_qlora.yaml": (
        "trl",
        {
            "class": "trl.SFTTrainer",
            "learning_rate": 2e-4,
            "micro": 4,
            "accumulation": 2,
            "lora": {"r": 16, "lora_alpha": 16, "lora_dropout": 0.05},
            "args": {
                "assistant_only_loss": False,  # SFTConfig's default
                "max_length": 2048,  # max_seq_length
                "save_steps": 100,
                "save_total_limit": 1,
                "logging_steps": 5,
                "dataset_num_proc": 12,
            },
            "quantization": {"load_in_4bit": True, "bnb_4bit_use_double_quant": False},
            "attention": "flash_attention_2",
        },
    ),
    "trl/dpo_full.yaml": (
        "trl",
        {
            "class": "trl.DPOTrainer",
            "learning_rate": 5e-7,
            "micro": 8,
            "accumulation": 2,
            "lora": None,
            "args": {
                "beta": 0.01,
                "loss_type": ["sigmoid"],
                "max_length": 1024,
                "optim": "adamw_torch",
                "eval_strategy": "steps",
                "eval_steps": 100,
            },
        },
    ),
    "trl/cli_sft_lora.yaml": (
        "trl",
        {
            "class": "trl.SFTTrainer",
            "learning_rate": 2e-4,
            "micro": 2,
            "accumulation": 4,
            "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
            "args": {"num_train_epochs": 3.0, "lr_scheduler_type": "linear", "packing": True, "neftune_noise_alpha": 5},
        },
    ),
}


def run_import(cli, fixture: str, out: Path, *extra: str) -> tuple[int, str, str]:
    tool = CASES[fixture][0] if fixture in CASES else fixture.split("/")[0]
    return cli("import", FIX / fixture, "--from", tool, "-o", out, "--hardware", "a100-80gb", "--gpus", GPUS, *extra)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_imported_recipe_validates_plans_and_trains_what_the_source_would(fixture, cli, tmp_path):
    _, want = CASES[fixture]
    out = tmp_path / "imported.yaml"
    code, stdout, stderr = run_import(cli, fixture, out)
    assert code == 0, stderr
    assert out.read_text().startswith(f"# Imported by `recipe import --from {CASES[fixture][0]}` from ")
    loaded = load(out)
    assert loaded.ok, [d.text() for d in loaded.errors]
    plan = resolve(loaded.recipe, {})
    assert not [p for p in plan.problems if p.severity == "error" and p.rule != "memory"], plan.problems
    args = plan.trainer["args"]
    assert plan.trainer["class"] == want["class"]
    assert args["learning_rate"] == want["learning_rate"]
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (
        want["micro"],
        want["accumulation"],
    )
    assert loaded.recipe.training.global_batch_size == want["micro"] * want["accumulation"] * GPUS
    if want["lora"] is None:
        assert plan.peft is None
    else:
        peft = plan.peft["args"]
        assert {k: peft[k] for k in want["lora"]} == want["lora"]
    for key, value in want["args"].items():
        assert args.get(key) == value, key
    for key, value in want.get("quantization", {}).items():
        assert plan.quantization["args"][key] == value, key
    if "zero" in want:
        assert loaded.recipe.hardware.zero == want["zero"]
        assert loaded.recipe.hardware.offload == want.get("offload", "none")
    if "eval_fraction" in want:
        assert loaded.recipe.datasets.eval_fraction == want["eval_fraction"]
    if "attention" in want:
        assert loaded.recipe.model.attention == want["attention"]
    if "start_from" in want:
        assert Path(loaded.recipe.adapter.start_from) == want["start_from"].resolve()
    # every key of the source is in the report
    source = safe_load((FIX / fixture).read_text())
    reported = {line.split()[0] for line in stdout.splitlines()[1:] if line.strip()}
    missing = [k for k in source if not any(r == k or r.startswith(k) for r in reported)]
    assert not missing, missing


# What each fixture loses, and nothing else: a key the recipe carries is never reported dropped.
DROPPED = {
    "axolotl/dpo.yml": {
        "deepspeed: zero_optimization.overlap_comm",
        "deepspeed: zero_optimization.contiguous_gradients",
        "early_stopping_patience",
    },
    "trl/sft_qlora.yaml": {"dataset_mixture.test_split_size", "eval_strategy"},
    "trl/dpo_full.yaml": {"max_prompt_length"},
}


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_only_what_has_no_counterpart_is_dropped(fixture, cli, tmp_path):
    code, stdout, _ = run_import(cli, fixture, tmp_path / "r.yaml", "--json")
    assert code == 0
    rows = json.loads(stdout)["rows"]
    assert {r["key"] for r in rows if r["status"] == "dropped"} == DROPPED.get(fixture, set())
    assert all(r["status"] in ("mapped", "changed", "default", "not needed", "dropped") for r in rows)


def test_every_source_key_has_a_row_with_a_status(cli, tmp_path):
    code, stdout, _ = run_import(cli, "axolotl/dpo.yml", tmp_path / "r.yaml", "--json")
    assert code == 0
    rows = json.loads(stdout)["rows"]
    by_key = {r["key"]: r for r in rows}
    source = safe_load((FIX / "axolotl/dpo.yml").read_text())
    assert set(source) <= {r["key"].split(" ")[0].split(":")[0] for r in rows} | {"datasets"}
    assert by_key["early_stopping_patience"]["status"] == "dropped"
    assert by_key["deepspeed: zero_optimization.overlap_comm"]["status"] == "dropped"
    assert by_key["deepspeed: bf16.enabled"]["status"] == "not needed"
    assert by_key["rl_beta (unset)"] == {**by_key["rl_beta (unset)"], "status": "default", "value": 0.1}
    assert by_key["(optimizer adamw_bnb_8bit with offload)"]["field"] == "training.optimizer"


def test_strict_refuses_when_a_key_is_dropped_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "r.yaml"
    code, _, stderr = run_import(cli, "axolotl/dpo.yml", out, "--strict")
    assert code == 1 and not out.exists()
    assert "--strict: 3 source key(s) dropped" in stderr and "early_stopping_patience" in stderr
    code, _, _ = run_import(cli, "axolotl/qlora.yml", out, "--strict")
    assert code == 0 and out.exists()


def test_existing_recipe_is_kept_and_hardware_defaults_loudly(cli, tmp_path):
    out = tmp_path / "r.yaml"
    out.write_text("keep me")
    code, _, stderr = run_import(cli, "axolotl/qlora.yml", out)
    assert code == 2 and "--force" in stderr and out.read_text() == "keep me"
    code, _, stderr = cli("import", FIX / "axolotl/qlora.yml", "--from", "axolotl", "-o", out, "--force")
    assert code == 0
    assert "no --hardware given: planned for a100-80gb" in stderr and "no --gpus given" in stderr
    recipe = load(out).recipe
    assert recipe.hardware.world_size == 1 and recipe.training.global_batch_size == 2 * 4


def test_llama_factory_needs_its_dataset_info(cli, tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text((FIX / "llama-factory/lora_sft.yaml").read_text())
    code, _, stderr = cli("import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml")
    assert code == 1 and "pass --dataset-info PATH" in stderr
    info = FIX / "llama-factory/data/dataset_info.json"
    code, _, stderr = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml", "--dataset-info", info
    )
    assert code == 0, stderr


def test_llama_factory_refuses_what_it_cannot_express(cli, tmp_path, write):
    info = FIX / "llama-factory/data/dataset_info.json"
    config = write("kto.yaml", "model_name_or_path: m\nstage: kto\ndataset: kto_demo\nlearning_rate: 1.0e-5\n")
    code, _, stderr = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml", "--dataset-info", info
    )
    assert code == 1 and "kto_tag" in stderr and "unpaired-preference" in stderr
    config = write("freeze.yaml", "model_name_or_path: m\nfinetuning_type: freeze\ndataset: alpaca_demo\n")
    code, _, stderr = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml", "--dataset-info", info
    )
    assert code == 1 and "finetuning_type: `freeze` has no counterpart" in stderr


def test_hub_dataset_entry_and_the_columns_trap(cli, tmp_path, write):
    """dataset_info: hf_hub_url + split + num_samples; once `columns` is given, the unlisted ones are unset."""
    info = FIX / "llama-factory/data/dataset_info.json"
    config = write("hub.yaml", "model_name_or_path: m\ndataset: ultrachat_hub,qa_demo\nlearning_rate: 1.0e-5\n")
    code, _, stderr = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml", "--dataset-info", info
    )
    assert code == 0, stderr
    hub, qa = load(tmp_path / "r.yaml").recipe.datasets.train
    assert (hub.source, hub.split, hub.format, hub.samples) == (
        "hf:HuggingFaceH4/ultrachat_200k",
        "train_sft",
        "messages",
        5000,
    )
    assert qa.format == "alpaca" and qa.columns == {"instruction": "question", "output": "answer"}
    code, stdout, _ = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "s.yaml", "--dataset-info", info, "--json"
    )
    [row] = [r for r in json.loads(stdout)["rows"] if r["key"] == "dataset_info[qa_demo].columns"]
    assert row["status"] == "changed" and "reads no input" in row["note"]


def test_pretraining_reads_the_prompt_column_as_text(cli, tmp_path, write):
    info = FIX / "llama-factory/data/dataset_info.json"
    config = write("pt.yaml", "model_name_or_path: m\nstage: pt\ndataset: notes_pt\nlearning_rate: 1.0e-5\n")
    code, _, stderr = cli(
        "import", config, "--from", "llama-factory", "-o", tmp_path / "r.yaml", "--dataset-info", info
    )
    assert code == 0, stderr
    recipe = load(tmp_path / "r.yaml").recipe
    [notes] = recipe.datasets.train
    assert (recipe.objective.kind, notes.format, notes.columns) == ("pretrain", "text", {"text": "content"})
    assert recipe.training.packing is True  # LLaMA-Factory packs pretraining by default


def test_trl_objective_is_inferred_from_its_config_class_keys_and_said(cli, tmp_path, write):
    data = FIX / "data/pairs.jsonl"
    config = write("kto.yaml", f"model_name_or_path: m\ndataset_name: {data}\ndesirable_weight: 1.5\n")
    code, _, stderr = cli("import", config, "--from", "trl", "-o", tmp_path / "r.yaml")
    assert code == 0, stderr
    assert "imported as `kto` (keys of its config class (desirable_weight))" in stderr
    recipe = load(tmp_path / "r.yaml").recipe
    assert recipe.objective.desirable_weight == 1.5 and recipe.objective.undesirable_weight == 1.0
    assert recipe.datasets.train[0].format == "preference"  # read from the file's first row
    code, _, stderr = cli("import", config, "--from", "trl", "-o", tmp_path / "s.yaml", "--objective", "grpo")
    assert code == 1 and "online RL needs reward sources" in stderr


def test_deepspeed_file_named_but_missing_must_be_a_shipped_one(cli, tmp_path, write):
    data = FIX / "data/alpaca.jsonl"
    base = f"base_model: m\ndatasets: [{{path: {data}, type: alpaca}}]\nlearning_rate: 1.0e-5\nmicro_batch_size: 1\n"
    config = write("a.yml", base + "deepspeed: deepspeed_configs/zero3_bf16_cpuoffload_all.json\n")
    code, _, stderr = cli("import", config, "--from", "axolotl", "-o", tmp_path / "r.yaml")
    assert code == 0, stderr
    hardware = load(tmp_path / "r.yaml").recipe.hardware
    assert (hardware.zero, hardware.offload) == (3, "all")
    config = write("b.yml", base + "deepspeed: my_tuned_zero.json\n")
    code, _, stderr = cli("import", config, "--from", "axolotl", "-o", tmp_path / "s.yaml")
    assert code == 1 and "my_tuned_zero.json does not exist" in stderr


IMPORTED_ROWS = {
    # fixture -> the first training row as the trainer receives it
    "axolotl/chat.yml": {
        "messages": [{"role": "user", "content": "What color is grass?"}, {"role": "assistant", "content": "Green."}]
    },
    "axolotl/dpo.yml": {
        "prompt": [{"role": "user", "content": "Color of the sky?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    },
    "llama-factory/qlora_dpo.yaml": {
        "prompt": [{"role": "user", "content": "Color of the sky?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    },
    "llama-factory/orpo.yaml": {
        "prompt": [{"role": "user", "content": "Translate to French.\n\ndog"}],
        "chosen": [{"role": "assistant", "content": "chien"}],
        "rejected": [{"role": "assistant", "content": "perro"}],
    },
}


@pytest.mark.parametrize("fixture", sorted(IMPORTED_ROWS))
def test_imported_data_reads_through_the_presets(fixture, cli, tmp_path):
    """The formats and column mappings chosen for the peers' dataset types read the data as the peer would."""
    from runner.data.sources import load_split

    out = tmp_path / "r.yaml"
    assert run_import(cli, fixture, out)[0] == 0
    recipe = load(out).recipe
    rows = list(load_split(recipe, "train"))
    want = IMPORTED_ROWS[fixture]
    assert any({k: row.get(k) for k in want} == want for row in rows), rows
