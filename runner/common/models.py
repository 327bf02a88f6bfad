"""Loading a tokenizer (with its chat template) and a model; library objects from a plan's `{"class", "args"}` specs.

One implementation, used by the training process, the preflight, `recipe data --template`, `recipe merge`
and `recipe chat`. Torch and the training libraries are imported inside the functions, so importing this
module is cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
CHATML_MARKERS = ("<|im_start|>", "<|im_end|>")
# End-of-turn markers of common chat templates; generation stops at any that the vocabulary has (and at eos).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")
# A local checkpoint whose tokenizer_config.json names the generic class (no remote code) is loaded by AutoTokenizer
# as that class for these model types (transformers 5.23's tokenization_auto; it substitutes its own class only for
# the types in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS and for Mistral's tekken format). tests/test_tokenizer_load.py
# checks each against AutoTokenizer.
GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
GENERIC_TOKENIZER_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text", "bloom", "gpt2", "gpt_neox"}
)


def shipped_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def template_text(choice: str) -> Optional[str]:
    """The Jinja text of a recipe's `model.chat_template`: a `.jinja` file or a shipped name; None when neither."""
    path = Path(choice)
    if path.suffix == ".jinja" and path.is_file():
        return path.read_text(encoding="utf-8")
    shipped = TEMPLATES_DIR / f"{choice}.jinja"
    return shipped.read_text(encoding="utf-8") if shipped.is_file() else None


def fallback_template(tokenizer: Any) -> str:
    """The template for a tokenizer that has none (a base model): ChatML when its markers are single tokens of the
    vocabulary, else `base`, whose assistant turns end with the tokenizer's own end-of-sequence token, so that the
    model learns to stop and generation stops there. (ChatML's markers would be split into ordinary tokens and no
    training row would contain the end-of-sequence token.)"""
    vocab = tokenizer.get_vocab()
    return "chatml" if all(m in vocab for m in CHATML_MARKERS) else "base"


def set_chat_template(tokenizer: Any, choice: Optional[str]) -> None:
    """Use the recipe's template (a shipped name or a .jinja file), else the tokenizer's own, else the fallback."""
    if choice:
        text = template_text(choice)
        if text is None:
            raise ValueError(
                f"model.chat_template: '{choice}' is neither a shipped template nor an existing .jinja file"
            )
        tokenizer.chat_template = text
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template_text(fallback_template(tokenizer))


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The token ids generation stops at: the tokenizer's eos and every end-of-turn marker its vocabulary has."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab]
    return sorted(set(ids))


def turn_end(tokenizer: Any) -> tuple[Optional[str], str]:
    """(the stop token an assistant turn ends with, or None; the text that follows the turn's content).

    A model learns to stop only if each trained assistant turn ends with a single token that generation stops at.
    """
    content = "Reply 7391."
    messages = [{"role": "user", "content": "Question?"}, {"role": "assistant", "content": content}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    after = text[text.rindex(content) + len(content) :]
    vocab, stop_ids = tokenizer.get_vocab(), stop_token_ids(tokenizer)
    stops = [t for t in (tokenizer.eos_token, *END_OF_TURN) if t and t in vocab and vocab[t] in stop_ids]
    return next((t for t in stops if after.startswith(t)), None), after


def remote_code_allowed(recipe: Any, flag: bool) -> bool:
    """Remote code runs only when the recipe asks for it and the person launching says --trust-remote-code."""
    return bool(flag and recipe.model.trust_remote_code)


def import_dotted(dotted: str) -> Any:
    """`trl.DPOTrainer` -> the class."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def peft_config(spec: dict) -> Any:
    """The PEFT config of a plan's `peft` entry; nested options become their PEFT classes."""
    args = dict(spec["args"])
    if isinstance(args.get("runtime_config"), dict):
        from peft import LoraRuntimeConfig

        args["runtime_config"] = LoraRuntimeConfig(**args["runtime_config"])
    return import_dotted(spec["class"])(**args)


def torch_dtype(name: str) -> Any:
    """`bfloat16` -> torch.bfloat16; `auto` stays `auto` (the checkpoint's own dtype)."""
    import torch

    return name if name == "auto" else getattr(torch, name)


def quantization_config(spec: dict) -> Any:
    """transformers.BitsAndBytesConfig from a plan's `quantization` entry (dtype names become torch dtypes)."""
    args = dict(spec["args"])
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        if isinstance(args.get(key), str):
            args[key] = torch_dtype(args[key])
    return import_dotted(spec["class"])(**args)


def generic_tokenizer(source: str) -> bool:
    """Whether AutoTokenizer would load this local tokenizer as the generic TokenizersBackend anyway. Loading that
    class directly skips AutoTokenizer's model-config import, which imports torch and the model registry (about
    3.5 s of a parent process that needs only the tokenizer, on a 2-core machine)."""
    import json

    path = Path(source)
    try:
        declared = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return False
    return (
        (path / "tokenizer.json").is_file()
        and declared.get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES
        and "auto_map" not in declared
        and model_type in GENERIC_TOKENIZER_MODEL_TYPES
    )


def load_tokenizer(
    source: str,
    *,
    revision: Optional[str] = None,
    trust_remote_code: bool = False,
    chat_template: Optional[str] = None,
    keep_template: bool = False,
    special_tokens: Any = None,
) -> Any:
    """A tokenizer with a pad token and a chat template (`chat_template`, else its own, else the fallback).

    `keep_template`: leave the tokenizer's template as saved (a run's own tokenizer holds the one it trained with).
    `special_tokens`: a recipe's `model.special_tokens`, set (and added when the vocabulary lacks them) first.
    """
    if not trust_remote_code and generic_tokenizer(source):
        from transformers import TokenizersBackend as AutoTokenizer  # the class AutoTokenizer picks; see above
    else:
        from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    if special_tokens is not None and special_tokens.all:
        named = {"pad_token": special_tokens.pad, "eos_token": special_tokens.eos}
        tokenizer.add_special_tokens(
            {**{k: v for k, v in named.items() if v}, "additional_special_tokens": list(special_tokens.additional)},
            replace_extra_special_tokens=False,
        )
    if not keep_template:
        set_chat_template(tokenizer, chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def recipe_tokenizer(recipe: Any, trust_remote_code: bool = False) -> Any:
    """The tokenizer a recipe trains with: its model's (or `model.tokenizer`), its special tokens, its template."""
    m = recipe.model
    return load_tokenizer(
        m.tokenizer or m.name_or_path,
        revision=m.revision,
        trust_remote_code=trust_remote_code,
        chat_template=m.chat_template,
        special_tokens=m.special_tokens,
    )


def fit_vocabulary(model: Any, tokenizer: Any, special_tokens: Any = None) -> None:
    """Grow the model's embeddings to the tokenizer's vocabulary (tokens a recipe added); point the model's eos id at
    a recipe's eos and its pad id at the tokenizer's pad when it has none."""
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is None:
            continue
        if special_tokens is not None and special_tokens.eos:
            config.eos_token_id = tokenizer.eos_token_id
        if config.pad_token_id is None or (special_tokens is not None and special_tokens.pad):
            config.pad_token_id = tokenizer.pad_token_id


def load_model(
    source: str,
    *,
    dtype: str,
    sequence_classifier: bool = False,
    revision: Optional[str] = None,
    trust_remote_code: bool = False,
    attention: Optional[str] = None,
    quantization: Optional[dict] = None,
    device_map: Any = None,
) -> Any:
    """A causal LM (or a one-score sequence classifier, for reward models) with `from_pretrained`.

    `quantization` is a plan's `{"class", "args"}` BitsAndBytesConfig spec. Under DeepSpeed ZeRO-3 the caller
    must have built the training arguments (which register the DeepSpeed config) before calling this, so that
    transformers constructs the model inside `deepspeed.zero.Init` and each process keeps only its shard.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if attention is not None:
        kwargs["attn_implementation"] = attention
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization)
    if device_map is not None:
        kwargs["device_map"] = device_map
    if sequence_classifier:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if quantization is not None:
        from .quantized import keep_training_layout

        keep_training_layout(model)  # the same 4-bit forward and weight layout on every CPU (quantized.py)
    return model
