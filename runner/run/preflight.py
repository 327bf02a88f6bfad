"""Checks in the parent process before anything is spawned: data, model, packages, output directory.

Each finds `Problem`s (schemas/problems.py): the recipe field, what is wrong and what to do, and the check's id
(declared in schemas.problems.CHECKS, listed in the reference); `recipe run` prints them all, located at the field's
line, and launches nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.plan import Plan
from schemas import Recipe
from schemas.adapters import ADAPTERS, adapter_facts
from schemas.problems import Problem

from .outputdir import check_output_dir


def check_node_environment(nodes: int, env) -> list[Problem]:
    """A multi-node run started with `recipe run` on each node needs this node's rank and the rank-0 address."""
    if nodes == 1:
        return []
    missing = [name for name in ("MACHINE_RANK", "MAIN_PROCESS_IP") if not env.get(name)]
    if not missing:
        rank = env["MACHINE_RANK"]
        if rank.isdigit() and int(rank) < nodes:
            return []
        message = f"MACHINE_RANK is {rank!r}; set it to the rank of this node, 0 to {nodes - 1}"
    else:
        message = (
            f"{nodes} nodes: set {' and '.join(missing)} on each node (MACHINE_RANK 0 to {nodes - 1}, "
            "MAIN_PROCESS_IP the address of node 0), or use `recipe run --slurm` and `sbatch`"
        )
    return [Problem(("hardware", "nodes"), message, "node-environment")]


# output.report_to backend -> (module the Trainer imports, pip package)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "trackio": ("trackio", "trackio"),
}


def check_trackers(report_to, probe: dict, env, home: Path) -> list[Problem]:
    """Each `output.report_to` backend is installed, and wandb can log (credentials, or offline mode)."""
    problems = []
    for backend in report_to:
        if backend == "none" or backend not in TRACKERS:
            continue
        module, package = TRACKERS[backend]
        if not probe.get(module):
            message = (
                f"{backend} is not installed here: pip install {package} (or remove {backend} from output.report_to)"
            )
            problems.append(Problem(("output", "report_to"), message, "tracker-missing"))
    if "wandb" in report_to and probe.get("wandb"):
        offline = env.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun")
        netrc = home / ".netrc"
        logged_in = bool(env.get("WANDB_API_KEY")) or (
            netrc.is_file() and "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
        )
        if not (offline or logged_in):
            message = (
                "wandb has no credentials here: run `wandb login` (or set WANDB_API_KEY), or set "
                "WANDB_MODE=offline to log to local files and `wandb sync` them later"
            )
            problems.append(Problem(("output", "report_to"), message, "tracker-credentials"))
    return problems


def check_packages(plan: Plan, probe: dict) -> list[Problem]:
    """Each package the plan needs is installed, located at the recipe field that needs it."""
    problems = []
    stack = ("model",)
    need = {
        "torch": (stack, "the training stack"),
        "transformers": (stack, "the training stack"),
        "trl": (("objective",), "the trainers"),
        "accelerate": (("hardware",), "the launcher"),
        "datasets": (("datasets",), "data loading"),
    }
    if plan.peft is not None:
        need["peft"] = (("adapter", "kind"), f"the {plan.recipe.adapter.kind} adapter")
    if plan.quantization is not None:
        need["bitsandbytes"] = (("quantization", "method"), f"{plan.recipe.quantization.method} quantization")
    if plan.deepspeed is not None:
        need["deepspeed"] = (("hardware", "zero"), f"ZeRO-{plan.zero}")
    if plan.attention == "flash_attention_2":
        need["flash_attn"] = (("model", "attention"), "attention: flash_attention_2")
    if plan.resolved["training"]["kernels"] == "liger":
        need["liger_kernel"] = (("training", "kernels"), "kernels: liger")
    for module, (path, why) in need.items():
        if not probe.get(module):
            hint = {
                "flash_attn": "pip install flash-attn (needs CUDA), or set model.attention: sdpa",
                "liger_kernel": "pip install liger-kernel (needs a GPU and Triton), or set training.kernels: none",
            }.get(module, "pip install -e '.[train]'")
            message = f"{why} needs the `{module.replace('_', '-')}` package, which is not installed: {hint}"
            problems.append(Problem(path, message, "package-missing"))
    return problems


def check_chat_template(recipe: Recipe) -> list[Problem]:
    from runner.common.models import shipped_templates, template_text

    choice = recipe.model.chat_template
    if not choice or template_text(choice) is not None:
        return []
    shipped = ", ".join(shipped_templates())
    message = f"'{choice}' is neither a shipped template ({shipped}) nor an existing .jinja file"
    return [Problem(("model", "chat_template"), message, "chat-template-missing")]


def check_turn_end(plan: Plan, tokenizer=None) -> list[Problem]:
    """Conversational data: each assistant turn must end with a single token generation stops at (eos or the
    template's end-of-turn marker), or the model never learns to stop and `recipe chat` runs to max_new_tokens."""
    r = plan.recipe
    if all(e.spec.family == "text" for e in (*r.datasets.train, *r.datasets.eval)):
        return []
    from runner.common.models import turn_end

    m = r.model
    tokenizer = tokenizer or _tokenizer(plan)
    if tokenizer is None:
        return []
    stop, after = turn_end(tokenizer)
    if stop is not None:
        return []
    which = f"model.chat_template '{m.chat_template}'" if m.chat_template else f"the chat template of {m.name_or_path}"
    message = (
        f"{which} ends an assistant turn with {after[:20]!r}, which is not a single token of "
        f"this tokenizer that generation stops at (its end-of-sequence token is {tokenizer.eos_token!r}), so the "
        "model would never learn to stop; use `chat_template: base`, which ends each assistant turn with the "
        "end-of-sequence token, or a template whose end-of-turn marker is in the vocabulary"
    )
    return [Problem(("model", "chat_template"), message, "turn-end-token")]


def check_special_tokens(plan: Plan) -> list[Problem]:
    """With an adapter, a new eos or marker token could not be learned: TRL's trainers compute the loss through
    the output layer's own weight (its fused LM head), which PEFT's trainable token rows do not reach."""
    r = plan.recipe
    tokens = r.model.special_tokens
    if adapter_facts(r.adapter.kind).label == "full fine-tuning" or not (tokens.eos or tokens.additional):
        return []
    from runner.common.models import load_tokenizer

    m = r.model
    try:
        vocab = load_tokenizer(m.tokenizer or m.name_or_path, revision=m.revision, keep_template=True).get_vocab()
    except (OSError, ValueError):
        return []
    new = [t for t in (tokens.eos, *tokens.additional) if t and t not in vocab]
    if not new:
        return []
    message = (
        f"{', '.join(new)} {'is' if len(new) == 1 else 'are'} not in the vocabulary of "
        f"{m.tokenizer or m.name_or_path}: a new token needs new embedding and output rows that a {r.adapter.kind} "
        "adapter cannot train (TRL computes the loss through the output layer's own weight). Use full "
        "fine-tuning, tokens the tokenizer has, or `chat_template: base`, which ends each assistant turn with the "
        "tokenizer's own end-of-sequence token"
    )
    return [Problem(("model", "special_tokens"), message, "special-tokens-untrainable")]


def check_assistant_mask(plan: Plan, tokenizer=None) -> list[Problem]:
    """Loss on assistant turns needs a chat template that marks them; TRL can patch some models' own templates."""
    if not plan.trainer["args"].get("assistant_only_loss"):
        return []
    m = plan.recipe.model
    tokenizer = tokenizer or _tokenizer(plan)
    if tokenizer is None:
        return []
    if has_generation_markers(tokenizer.chat_template):
        return []
    from trl.chat_template_utils import get_training_chat_template  # imports torch: only when it can help

    try:
        get_training_chat_template(tokenizer)
        return []
    except ValueError:
        pass
    which = f"model.chat_template '{m.chat_template}'" if m.chat_template else f"the chat template of {m.name_or_path}"
    message = (
        f"{which} does not mark the assistant's turns ({{% generation %}}), so the "
        "loss cannot be limited to them; set `model.chat_template` to a template that marks them (the shipped "
        "`chatml` or `llama3`, or a .jinja file with {% generation %}...{% endgeneration %} around each assistant "
        "turn), or `objective.assistant_only_loss: false` to train on every token"
    )
    return [Problem(("objective", "assistant_only_loss"), message, "assistant-mask")]


def has_generation_markers(template: str | dict) -> bool:
    """TRL 1.16's test for `{% generation %}` markers (trl.chat_template_utils.has_generation_markers), without
    importing TRL (and torch) in the parent for a template that has them."""
    import re

    text = template["default"] if isinstance(template, dict) else template
    return re.search(r"\{%-?\s*generation\s*-?%\}", text or "") is not None


def _tokenizer(plan: Plan):
    """The tokenizer the recipe trains with, or None when it cannot be loaded (check_model and
    check_chat_template report why)."""
    from runner.common.models import recipe_tokenizer

    try:
        return recipe_tokenizer(plan.recipe)
    except (OSError, ValueError):
        return None


def check_template(plan: Plan) -> list[Problem]:
    """The chat-template checks, on the tokenizer the recipe trains with (loaded once for both)."""
    tokenizer = _tokenizer(plan)
    if tokenizer is None:
        return []
    from runner.common.sandbox import template_refusal

    refused = template_refusal(tokenizer)  # rendered in a limited sandbox before transformers renders it
    if refused:
        return [Problem(("model", "chat_template"), refused, "chat-template-render")]
    return check_turn_end(plan, tokenizer) + check_assistant_mask(plan, tokenizer)


def _looks_local(name: str) -> bool:
    """After loading, a local model path is absolute (the loader anchored it to the recipe file); a Hub id is
    `name` or `org/name`."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def check_model(recipe: Recipe) -> list[Problem]:
    """A model or tokenizer path that looks local must exist: else the training process would take it for a Hub
    id and die there with a download error."""
    problems = []
    model = recipe.model.name_or_path
    if _looks_local(model) and not (Path(model) / "config.json").is_file():
        what = "is not a model directory (no config.json)" if Path(model).exists() else "does not exist"
        message = f"{model} {what} (relative paths are relative to the recipe file)"
        problems.append(Problem(("model", "name_or_path"), message, "model-missing"))
    tokenizer = recipe.model.tokenizer
    if tokenizer and _looks_local(tokenizer) and not Path(tokenizer).is_dir():
        message = f"{tokenizer} does not exist (relative paths are relative to the recipe file)"
        problems.append(Problem(("model", "tokenizer"), message, "model-missing"))
    return problems


# What a saved adapter_config.json must agree on with the recipe's PEFT arguments.
ADAPTER_SHAPE = ("task_type", "r", "lora_alpha", "use_dora", "use_rslora", "num_virtual_tokens", "prefix_projection")


def check_start_adapter(plan: Plan) -> list[Problem]:
    """`adapter.start_from`: a local adapter exists and has the recipe's kind and shape (a Hub adapter is checked the
    same way by the training process, when it is loaded)."""
    path = getattr(plan.recipe.adapter, "start_from", None)
    if not path or plan.peft is None or not _looks_local(path):
        return []
    field, config_file = ("adapter", "start_from"), Path(path) / "adapter_config.json"
    if not config_file.is_file():
        what = "has no adapter_config.json" if Path(path).is_dir() else "does not exist"
        message = f"{path} {what} (relative paths are relative to the recipe file)"
        return [Problem(field, message, "start-adapter-missing")]
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [Problem(field, f"{config_file} cannot be read: {exc}", "start-adapter-missing")]
    differ = adapter_differences(saved, plan.peft)
    return [Problem(field, f"{path} {differ}", "start-adapter-shape")] if differ else []


def adapter_differences(saved: dict, peft: dict) -> str:
    """How a saved adapter's config differs from the recipe's PEFT arguments, as a sentence ("" when it agrees)."""
    peft_type = next(a.peft_type for a in ADAPTERS.values() if a.peft_config == peft["class"])
    expected = {"peft_type": peft_type, **peft["args"]}
    differ = [
        f"{key} {saved.get(key)!r} (the recipe's: {expected[key]!r})"
        for key in ("peft_type", *ADAPTER_SHAPE)
        if key in expected and key in saved and saved[key] != expected[key]
    ]
    targets, theirs = expected.get("target_modules"), saved.get("target_modules")
    if isinstance(targets, list) and isinstance(theirs, (list, set, tuple)) and set(theirs) != set(targets):
        differ.append(f"target_modules {sorted(theirs)} (the recipe's: {sorted(targets)})")
    if not differ:
        return ""
    return (
        "was trained with " + ", ".join(differ) + "; set the adapter section to match it (a different shape cannot "
        "continue from these weights)"
    )


def check_data(recipe: Recipe) -> list[Problem]:
    """Every row of every source, read and checked (runner/data/check.py); cached by the data's fingerprint and the
    recipe's data fields, so a second run of the same recipe and data does not read it again."""
    from runner.data.cache import cached_check
    from runner.data.report import problems_of

    report, _ = cached_check(recipe)
    return problems_of(report)


def preflight(
    plan: Plan, probe: dict, *, overwrite: bool = False, resume: bool = False, recipe_file: str | None = None
) -> list[Problem]:
    r = plan.recipe
    problems = check_output_dir(r, overwrite, resume, recipe_file) + check_packages(plan, probe) + check_model(r)
    problems += check_chat_template(r)
    problems += check_trackers(r.output.report_to, probe, os.environ, Path.home()) + check_start_adapter(plan)
    if not problems:
        problems += check_special_tokens(plan)
    if not problems:
        problems += check_template(plan)
    if not any(p.rule == "package-missing" and p.path == ("datasets",) for p in problems):
        problems += check_data(r)
    return problems
