"""The plan's exact arguments become the tokenizer, model, PEFT config, datasets and TRL trainer (training only)."""

from __future__ import annotations

from typing import Any

from runner.common.models import fit_vocabulary, import_dotted, load_model, peft_config, recipe_tokenizer
from runner.common.trained import load_reward_model
from runner.plan.types import Plan
from schemas.objectives import facts

REWARDS_MODULE = "runner.run.rewards"  # where a reward function named without `module:` is looked up


def reward_function(name: str) -> Any:
    """A named reward function: shipped (`exact_match`), `module:function`, or `path/to/file.py:function`."""
    import importlib
    import importlib.util

    module, _, attr = name.partition(":")
    if not attr:
        module, attr = REWARDS_MODULE, name
    if module.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"recipe_rewards_{abs(hash(module))}", module)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return getattr(loaded, attr)
    return getattr(importlib.import_module(module), attr)


def reward_sources(plan: Plan, trust_remote_code: bool) -> tuple[list, list]:
    """(reward functions, their tokenizers) of an online RL objective: the reward model first, scored with its own
    tokenizer (not the policy's), then the named functions (which take no tokenizer)."""
    o = plan.recipe.objective
    funcs: list = []
    tokenizers: list = []
    if o.reward_model:
        model, tokenizer = load_reward_model(o.reward_model, plan.dtype, trust_remote_code)
        funcs.append(model)
        tokenizers.append(tokenizer)
    for name in o.reward_functions:
        funcs.append(reward_function(name))
        tokenizers.append(None)
    return funcs, tokenizers


def load_for_training(plan: Plan, trust_remote_code: bool) -> tuple[Any, Any]:
    """(tokenizer, model) as the plan says: dtype, attention, quantization, where the weights go, and the recipe's
    special tokens (the embeddings grown for tokens it adds)."""
    m = plan.recipe.model
    tokenizer = recipe_tokenizer(plan.recipe, trust_remote_code)
    device_map = None
    if plan.quantization is not None and plan.zero != 3:
        from accelerate import PartialState

        state = PartialState()
        device_map = {"": state.local_process_index if state.device.type == "cuda" else "cpu"}
    model = load_model(
        m.name_or_path,
        dtype=plan.dtype,
        sequence_classifier=facts(plan.recipe.objective.kind).reward_head,
        revision=m.revision,
        trust_remote_code=trust_remote_code,
        attention=plan.attention if plan.attention != "eager" or m.attention == "eager" else None,
        quantization=plan.quantization,
        device_map=device_map,
    )
    fit_vocabulary(model, tokenizer, m.special_tokens)
    return tokenizer, model


def _join_process_group(plan: Plan, config: Any) -> None:
    """Join the process group before loading, so that ZeRO-3's `zero.Init` shards over every process.

    Reading `config.device` sets up accelerate's process group; on GPUs that also initialises DeepSpeed's
    communication. CPU processes (`use_cpu`, gloo) get a plain torch group, which DeepSpeed is then told to use.
    """
    config.device  # noqa: B018
    if plan.zero is not None:
        import deepspeed

        deepspeed.init_distributed(dist_backend=config.ddp_backend or "nccl")


def start_adapter(plan: Plan, model: Any, path: str) -> Any:
    """The model with a trained adapter loaded to continue training, of the recipe's kind and shape (a local adapter
    is checked before launch; a Hub adapter here, once loaded).

    TRL trains a PeftModel given without `peft_config` as it is; its reference-model trainers keep a frozen copy
    of this adapter as the reference. Under ZeRO-3 an unquantized model keeps the adapter in the model's dtype, as
    TRL does for a new adapter (DeepSpeed gathers one dtype per parameter group).
    """
    from peft import PeftModel

    from runner.run.preflight import adapter_differences

    same_dtype = plan.zero == 3 and plan.quantization is None
    model = PeftModel.from_pretrained(model, path, is_trainable=True, autocast_adapter_dtype=not same_dtype)
    differ = adapter_differences(model.peft_config["default"].to_dict(), plan.peft)
    if differ:  # a Hub adapter, which the preflight could not read: the plan's shape must be the one that trains
        raise ValueError(f"adapter.start_from: {path} {differ}")
    return model


def build_trainer(plan: Plan, *, trust_remote_code: bool = False, callbacks=()) -> Any:
    from transformers import set_seed

    from runner.data.sources import load_splits

    recipe = plan.recipe
    set_seed(recipe.training.seed)  # before loading: newly initialised heads (a reward model's score) are seeded too
    # The training arguments first: with a DeepSpeed ZeRO-3 config they register it (transformers'
    # HfDeepSpeedConfig, held as long as `config` lives), so that loading the model below builds it inside
    # `deepspeed.zero.Init` and each process materialises only its shard of the weights.
    config = import_dotted(plan.trainer["config_class"])(**plan.trainer["args"])
    _join_process_group(plan, config)
    tokenizer, model = load_for_training(plan, trust_remote_code)
    train_dataset, eval_dataset = load_splits(recipe)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": config,
        "train_dataset": train_dataset,
        "processing_class": tokenizer,
        "callbacks": list(callbacks),
    }
    if eval_dataset is not None:
        kwargs["eval_dataset"] = eval_dataset
    start_from = getattr(recipe.adapter, "start_from", None)
    if start_from:
        kwargs["model"] = start_adapter(plan, model, start_from)
    elif plan.peft is not None:
        kwargs["peft_config"] = peft_config(plan.peft)
    if facts(plan.recipe.objective.kind).generates:
        kwargs["reward_funcs"], kwargs["reward_processing_classes"] = reward_sources(plan, trust_remote_code)
    trainer = import_dotted(plan.trainer["class"])(**kwargs)
    training = plan.resolved["training"]
    if training["padding_free"] and not training["packing"]:
        # TRL 1.16 makes padding-free batches without packing only when it need not truncate (max_length None);
        # the trainer above truncated its rows to max_length, and its collator now concatenates them
        trainer.data_collator.padding_free = True
    return trainer
