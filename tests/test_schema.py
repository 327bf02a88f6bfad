"""The schema itself: documented fields, the checked-in JSON Schema, profiles, and names matching TRL/transformers."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pydantic

from schemas import Recipe, load, load_profile, profile_names
from schemas.adapters import Adapter
from schemas.datasets import FORMATS
from schemas.jsonschema import SCHEMA_FILE, recipe_json_schema_text
from schemas.objectives import DPO_LOSSES, Objective
from schemas.sections import LR_SCHEDULERS, OPTIMIZERS

from conftest import ROOT


def all_models(root=Recipe):
    seen, todo = [], [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            for tp in _types_in(field.annotation):
                if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
                    todo.append(tp)
    return seen


def _types_in(tp):
    yield tp
    for arg in typing.get_args(tp):
        yield from _types_in(arg)


def test_every_field_has_a_description():
    missing = [
        f"{m.__name__}.{n}"
        for m in all_models()
        for n, f in m.model_fields.items()
        if not (f.description or "").strip()
    ]
    assert missing == []
    assert len(all_models()) >= 20


def test_every_model_forbids_unknown_keys_and_is_strict():
    for m in all_models():
        assert m.model_config.get("extra") == "forbid", m
        assert m.model_config.get("strict") is True, m


def test_checked_in_json_schema_is_in_sync():
    assert SCHEMA_FILE.read_text() == recipe_json_schema_text(), "run: recipe schema > schemas/recipe.schema.json"
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["properties"]) >= {
        "model",
        "quantization",
        "adapter",
        "objective",
        "datasets",
        "training",
        "hardware",
        "output",
        "version",
        "name",
        "description",
        "extends",
    }


def test_shipped_recipes_point_editors_at_the_schema():
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert recipes
    for path in recipes:
        first = path.read_text().splitlines()[0]
        m = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert m, f"{path} must start with the yaml-language-server schema line"
        assert (path.parent / m[1]).resolve() == SCHEMA_FILE.resolve(), path


def test_json_schema_accepts_the_example_and_rejects_a_typo():
    """Editors check recipes with the JSON Schema: it must accept the contract and refuse unknown keys."""
    import jsonschema

    from conftest import example

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    data = example()
    assert list(validator.iter_errors(data)) == []
    data["adapter"]["rank"] = 8
    data["training"]["lr_scheduler"] = "cosine-ish"
    messages = sorted(e.message for e in validator.iter_errors(data))
    assert messages, "the JSON Schema let an unknown key and a bad value through"


def kinds(union) -> list[str]:
    members = typing.get_args(typing.get_args(union)[0])
    return [typing.get_args(m.model_fields["kind"].annotation)[0] for m in members]


def test_adapter_and_objective_kinds_are_the_contract():
    assert kinds(Adapter) == ["full", "lora", "dora", "prefix", "prompt", "p-tuning", "ia3"]
    assert kinds(Objective) == ["sft", "pretrain", "dpo", "orpo", "kto", "simpo", "cpo", "reward", "grpo", "rloo"]


def test_dataset_formats_cover_the_contract():
    required = (
        "messages text prompt-completion preference unpaired-preference prompt-only hh-rlhf ultrafeedback ultrachat "
        "sharegpt alpaca triviaqa lima"
    )
    assert set(required.split()) <= set(FORMATS)


def test_hardware_profiles():
    required = "cpu t4-16gb v100-32gb a10g-24gb l4-24gb rtx4090-24gb a100-40gb a100-80gb h100-80gb h200-141gb"
    assert set(required.split()) <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.cpu_ram_gb > 0 and p.description
        if p.is_gpu:
            assert p.gpu_memory_gb > 8 and p.compute_capability is not None
            assert p.bf16 == (p.compute_capability >= 8.0), name
        else:
            assert p.gpu_memory_gb == 0 and not p.bf16


def test_inline_hardware_overrides_and_full_inline(recipe_variant):
    r = recipe_variant({"hardware.gpu_memory_gb": 20.0}).recipe
    assert r.hardware.resolved_profile().gpu_memory_gb == 20.0
    assert r.hardware.resolved_profile().compute_capability == 8.9
    hw = {"accelerator": "cuda", "gpu_memory_gb": 48.0, "compute_capability": 8.6, "bf16": True, "cpu_ram_gb": 256.0}
    r = recipe_variant({"hardware": hw}).recipe
    assert r.hardware.resolved_profile().gpu_memory_gb == 48.0
    loaded = recipe_variant({"hardware": {"gpu_memory_gb": 48.0}})
    assert not loaded.ok
    assert any("accelerator" in d.message and d.field == "hardware" for d in loaded.errors)


SITE = Path(pydantic.__file__).resolve().parent.parent


def _source(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, module
    return Path(spec.origin).read_text()


def test_dpo_loss_names_match_installed_trl():
    trainer = _source("trl.trainer.dpo_trainer")
    in_trl = set(re.findall(r'loss_type == "([a-z_]+)"', trainer))
    assert in_trl == set(DPO_LOSSES)


def test_cpo_losses_match_installed_trl():
    from schemas.objectives import CPOObjective

    trainer = _source("trl.experimental.cpo.cpo_trainer")
    in_trl = set(re.findall(r'self\.loss_type == "([a-z_]+)"', trainer)) - {"simpo"}
    assert set(typing.get_args(CPOObjective.model_fields["loss"].annotation)) == in_trl


def test_scheduler_and_optimizer_names_exist_in_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}
    assert set(OPTIMIZERS) <= {o.value for o in OptimizerNames}


def test_trl_config_fields_we_name_exist():
    """The objective fields that mirror TRL config fields must exist there under the same name."""
    import dataclasses

    import trl
    from trl.experimental.cpo import CPOConfig
    from trl.experimental.orpo import ORPOConfig

    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert {"beta", "loss_weights", "label_smoothing"} <= names(trl.DPOConfig)
    assert {"beta", "desirable_weight", "undesirable_weight"} <= names(trl.KTOConfig)
    assert {"beta", "cpo_alpha", "simpo_gamma", "label_smoothing"} <= names(CPOConfig)
    assert "beta" in names(ORPOConfig)
    assert "center_rewards_coefficient" in names(trl.RewardConfig)
    for cfg in (trl.GRPOConfig, trl.RLOOConfig):
        assert {
            "beta",
            "num_generations",
            "max_completion_length",
            "temperature",
            "generation_batch_size",
            "reward_weights",
        } <= names(cfg)
    assert {"assistant_only_loss", "completion_only_loss", "packing"} <= names(trl.SFTConfig)


def test_example_has_no_unknown_keys_against_schema_properties():
    loaded = load(ROOT / "recipes" / "llama3-dpo-qlora.yaml")
    dumped = loaded.recipe.model_dump()
    assert dumped["quantization"]["method"] == "bnb-4bit" and dumped["hardware"]["profile"] == "rtx4090-24gb"


def test_generated_reference_is_in_sync():
    from schemas.reference import recipe_reference

    path = ROOT / "docs" / "recipe-reference.md"
    assert path.read_text() == recipe_reference(), "run: recipe schema --reference > docs/recipe-reference.md"
    text = path.read_text()
    for section in (
        "`model`",
        "`quantization`",
        "`adapter.kind: dora`",
        "`objective.kind: grpo`",
        "`datasets.train[]`",
        "`training`",
        "`hardware`",
        "`output`",
    ):
        assert f"## {section}" in text or f"### {section}" in text, section
    from schemas.rules import RULES

    assert all(f"`{r.id}`" in text for r in RULES)
