"""Model and adapter rules: what a quantized, prefix-tuned or remote-code model and its adapter allow."""

from __future__ import annotations

from typing import Iterable

from ..adapters import adapter_facts
from ..recipe import Recipe
from .core import Finding, rule


@rule(
    "quantization-needs-adapter",
    "A quantized base model trains only through an adapter (bnb-4bit with lora/dora is QLoRA).",
)
def quantization_needs_adapter(r: Recipe) -> Iterable[Finding]:
    if r.is_quantized and r.adapter.kind == "full":
        yield (
            ("quantization", "method"),
            (
                f"{r.quantization.method} weights cannot be trained directly: use an adapter (e.g. "
                f"`adapter: {{kind: lora}}`, "
                "which with bnb-4bit is QLoRA) or set `quantization.method: none` for full fine-tuning"
            ),
        )


@rule(
    "prefix-vs-gradient-checkpointing",
    "Prefix tuning cannot be combined with gradient checkpointing (PEFT refuses it).",
)
def prefix_vs_gradient_checkpointing(r: Recipe) -> Iterable[Finding]:
    if not adapter_facts(r.adapter.kind).gradient_checkpointing and r.training.gradient_checkpointing is True:
        yield (
            ("training", "gradient_checkpointing"),
            (
                "prefix tuning's past key/values cannot be recomputed under gradient checkpointing; "
                "set `gradient_checkpointing: false` (or `auto`)"
            ),
        )


@rule("special-tokens-need-trainable-embeddings", "New eos or marker tokens are learned by full fine-tuning (or LoRA).")
def special_tokens_need_trainable_embeddings(r: Recipe) -> Iterable[Finding]:
    tokens = r.model.special_tokens
    if (tokens.eos or tokens.additional) and not adapter_facts(r.adapter.kind).new_token_rows:
        yield (
            ("model", "special_tokens"),
            (
                f"a {r.adapter.kind} adapter leaves the model's embeddings and output layer as they are, so a new "
                "end-of-sequence token or marker could not be learned; use full fine-tuning, or LoRA with tokens "
                "the tokenizer already has (`chat_template: base` ends each turn with its own eos)"
            ),
        )


@rule(
    "trust-remote-code",
    "trust_remote_code runs code from the model repository; it is honoured only with `recipe run --trust-remote-code`.",
    severity="warning",
)
def trust_remote_code(r: Recipe) -> Iterable[Finding]:
    if r.model.trust_remote_code:
        yield (
            ("model", "trust_remote_code"),
            (
                "this recipe asks to run the model repository's own code; `recipe run` honours it only when also given "
                "`--trust-remote-code`"
            ),
        )
