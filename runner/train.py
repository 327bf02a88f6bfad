"""The entrypoint `accelerate launch -m runner.train OUTPUT_DIR/launch/recipe.resolved.yaml` runs in every process.

It re-validates nothing: the parent process validated the recipe, resolved the plan and
wrote `plan.json` beside the resolved recipe. Here the plan's exact arguments become the
tokenizer, model, PEFT config, datasets and TRL trainer; then it trains, evaluates and saves.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from schemas import load

from .builders import import_dotted, peft_config, quantization_config

TEMPLATES_DIR = Path(__file__).parent / "templates"


def set_chat_template(recipe, tokenizer) -> None:
    """Use the recipe's template (a shipped name or a .jinja file), else the tokenizer's own, else ChatML."""
    choice = recipe.model.chat_template
    if choice:
        path = Path(choice)
        if path.suffix == ".jinja" and path.is_file():
            tokenizer.chat_template = path.read_text(encoding="utf-8")
        else:
            tokenizer.chat_template = (TEMPLATES_DIR / f"{choice}.jinja").read_text(encoding="utf-8")
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = (TEMPLATES_DIR / "chatml.jinja").read_text(encoding="utf-8")


def load_tokenizer(recipe, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        recipe.model.tokenizer or recipe.model.name_or_path, revision=recipe.model.revision, trust_remote_code=trust_remote_code
    )
    set_chat_template(recipe, tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(recipe, plan: dict, tokenizer, trust_remote_code: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, plan["recipe"]["model"]["dtype"]),
        "revision": recipe.model.revision,
        "trust_remote_code": trust_remote_code,
    }
    if plan["attention"] != "eager" or recipe.model.attention == "eager":
        kwargs["attn_implementation"] = plan["attention"]
    if plan["quantization"] is not None:
        kwargs["quantization_config"] = quantization_config(plan["quantization"])
        if plan["deepspeed"] is None or plan["deepspeed"]["zero_optimization"]["stage"] != 3:
            from accelerate import PartialState

            state = PartialState()
            kwargs["device_map"] = {"": state.local_process_index if state.device.type == "cuda" else "cpu"}
    if recipe.objective.kind == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(recipe.model.name_or_path, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(recipe.model.name_or_path, **kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _reward_funcs(recipe) -> list:
    o = recipe.objective
    funcs: list = []
    if o.reward_model:
        funcs.append(o.reward_model)
    for name in o.reward_functions:
        module, _, attr = name.partition(":")
        if not attr:
            module, attr = "runner.rewards", name
        funcs.append(getattr(__import__(module, fromlist=[attr]), attr))
    return funcs


def build_trainer(recipe, plan: dict, *, trust_remote_code: bool = False, callbacks=()):
    from .data.sources import load_splits

    from transformers import set_seed

    set_seed(recipe.training.seed)  # before loading: newly initialised heads (a reward model's score) are seeded too
    tokenizer = load_tokenizer(recipe, trust_remote_code)
    model = load_model(recipe, plan, tokenizer, trust_remote_code)
    config_cls = import_dotted(plan["trainer"]["config_class"])
    trainer_cls = import_dotted(plan["trainer"]["class"])
    config = config_cls(**plan["trainer"]["args"])
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
    if plan["peft"] is not None:
        kwargs["peft_config"] = peft_config(plan["peft"])
    if recipe.objective.kind in ("grpo", "rloo"):
        kwargs["reward_funcs"] = _reward_funcs(recipe)
    return trainer_cls(**kwargs)


def remote_code_allowed(recipe, flag: bool) -> bool:
    """Remote code runs only when the recipe asks for it and the person launching says --trust-remote-code."""
    return bool(flag and recipe.model.trust_remote_code)


class StopOnSigterm:
    """On SIGTERM (a preempted node), finish the current step, save a checkpoint and stop."""

    def __init__(self) -> None:
        import signal

        self.requested = False
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if outer.requested:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return _Callback()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner.train", description=__doc__)
    parser.add_argument("resolved", help="OUTPUT_DIR/launch/recipe.resolved.yaml")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output directory")
    args = parser.parse_args(argv)
    resolved = Path(args.resolved)
    plan = json.loads((resolved.parent / "plan.json").read_text(encoding="utf-8"))
    recipe = load(resolved, check_rules=False).recipe
    trust = remote_code_allowed(recipe, args.trust_remote_code)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    from .outputs import MetricsCallback, finish_run

    stop = StopOnSigterm()
    from .progress import LiveProgress

    callbacks = [MetricsCallback(Path(recipe.output_dir)), stop.callback(), LiveProgress()]
    trainer = build_trainer(recipe, plan, trust_remote_code=trust, callbacks=callbacks)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for duplicate in (PrinterCallback, ProgressCallback):  # LiveProgress prints the logs and the progress
        trainer.remove_callback(duplicate)
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    if stop.requested:
        if trainer.accelerator.is_main_process:
            print(
                f"runner.train: stopped by SIGTERM at step {trainer.state.global_step}; a checkpoint was saved in "
                f"{recipe.output_dir}. Continue with: recipe run RECIPE --resume",
                flush=True,
            )
        return 143
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(recipe.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(recipe.output_dir)
        finish_run(recipe, plan, resolved, metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
