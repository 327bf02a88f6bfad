"""The `adapter` section: which parameters train. A union discriminated by `kind`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import Section
from .localpath import HubOrPath


def _start_from() -> Any:
    """The `start_from` field: the last of each adapter kind's section (after its shape)."""
    return Field(
        None,
        description="A trained adapter to continue training (Axolotl's `lora_model_dir`, LLaMA-Factory's "
        "`adapter_name_or_path`): a directory with `adapter_config.json`, relative to the recipe file, e.g. the "
        "output of an SFT recipe before DPO. Its kind and shape must be this section's (checked before launch). "
        "Objectives with a reference model use a frozen copy of it as the reference.",
    )


class FullAdapter(Section):
    """Full fine-tuning: every weight of the model trains."""

    kind: Literal["full"] = Field(description="`full`: train all weights (no adapter).")


class LoraAdapter(Section):
    """LoRA: low-rank update matrices beside the frozen weights (QLoRA when the base is 4-bit quantized)."""

    kind: Literal["lora"] = Field(description="`lora`: low-rank adaptation.")
    r: int = Field(16, ge=1, le=4096, description="Rank of the update matrices.")
    alpha: int = Field(
        32, gt=0, description="Scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with `rslora`)."
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: Union[Literal["all-linear"], list[str]] = Field(
        "all-linear",
        description="Modules that get adapters: `all-linear` (every linear layer except the output head, as in QLoRA) "
        "or a list of module names such as `[q_proj, v_proj]`.",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA: scale by alpha / sqrt(r).")
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. `[embed_tokens, "
        "lm_head]` after adding tokens).",
    )
    start_from: Optional[HubOrPath] = _start_from()


class DoraAdapter(LoraAdapter):
    """DoRA: LoRA with a learned magnitude per output feature (weight-decomposed)."""

    kind: Literal["dora"] = Field(description="`dora`: weight-decomposed low-rank adaptation.")  # type: ignore[assignment]
    ephemeral_gpu_offload: bool = Field(
        False, description="Compute DoRA's weight norms on the GPU when the base weights were offloaded to CPU."
    )


class PrefixAdapter(Section):
    """Prefix tuning: trainable key/value prefixes in every attention layer."""

    kind: Literal["prefix"] = Field(description="`prefix`: prefix tuning.")
    num_virtual_tokens: int = Field(20, ge=1, le=1024, description="Length of the learned prefix.")
    prefix_projection: bool = Field(
        False, description="Reparameterise the prefix through an MLP (the paper's stabilising trick)."
    )
    encoder_hidden_size: Optional[int] = Field(
        None, ge=1, description="Hidden size of that MLP; default the model's hidden size."
    )
    start_from: Optional[HubOrPath] = _start_from()


class PromptAdapter(Section):
    """Prompt tuning: trainable soft-prompt embeddings prepended to the input."""

    kind: Literal["prompt"] = Field(description="`prompt`: prompt tuning.")
    num_virtual_tokens: int = Field(20, ge=1, le=1024, description="Number of soft-prompt tokens.")
    init: Literal["random", "text"] = Field(
        "random", description="Initialise the soft prompt randomly or from the embedding of `init_text`."
    )
    init_text: Optional[str] = Field(
        None, description="Text whose token embeddings initialise the soft prompt (with `init: text`)."
    )
    start_from: Optional[HubOrPath] = _start_from()

    @model_validator(mode="after")
    def _text_given(self) -> "PromptAdapter":
        if self.init == "text" and not self.init_text:
            raise ValueError("`init: text` needs `init_text`, the text whose embeddings start the soft prompt")
        return self


class PTuningAdapter(Section):
    """P-tuning: soft-prompt embeddings produced by a small trainable encoder."""

    kind: Literal["p-tuning"] = Field(description="`p-tuning`: P-tuning.")
    num_virtual_tokens: int = Field(20, ge=1, le=1024, description="Number of virtual tokens.")
    encoder_type: Literal["MLP", "LSTM"] = Field("MLP", description="Reparameterisation encoder.")
    encoder_hidden_size: int = Field(128, ge=1, description="Hidden size of the encoder.")
    encoder_num_layers: int = Field(2, ge=1, description="Layers of the encoder.")
    encoder_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the encoder.")
    start_from: Optional[HubOrPath] = _start_from()


class IA3Adapter(Section):
    """(IA)³: learned rescaling vectors on keys, values and feed-forward activations."""

    kind: Literal["ia3"] = Field(description="`ia3`: infused adapter by inhibiting and amplifying inner activations.")
    target_modules: Union[Literal["auto"], list[str]] = Field(
        "auto",
        description="Modules rescaled; `auto` uses PEFT's table for the architecture (keys, values, down projection).",
    )
    feedforward_modules: Union[Literal["auto"], list[str]] = Field(
        "auto",
        description="Which of `target_modules` are feed-forward layers (their input is rescaled); "
        "`auto` uses PEFT's table.",
    )
    start_from: Optional[HubOrPath] = _start_from()


Adapter = Annotated[
    Union[FullAdapter, LoraAdapter, DoraAdapter, PrefixAdapter, PromptAdapter, PTuningAdapter, IA3Adapter],
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class AdapterFacts:
    """What the rest of the program needs to know about an adapter kind, in one place.

    The PEFT arguments, the memory estimate, the rules, the checks before launch (a saved adapter's kind), merging
    and the listings read this table; adding an adapter kind adds a row here, its section class above, and its PEFT
    arguments in `runner/plan/arguments.py` (tests/test_structure.py checks that every kind has both).
    """

    peft_config: Optional[str]  # PEFT's config class, as an importable dotted name (None: no adapter)
    peft_type: Optional[str]  # the `peft_type` PEFT writes into adapter_config.json
    label: str  # the kind in words
    low_rank: bool = False  # update matrices beside linear layers (LoRA, DoRA): QLoRA on a 4-bit base
    virtual_tokens: bool = False  # prompt learning: learned tokens in front of every input, no weights change
    mergeable: bool = False  # `recipe merge` can fold it into the base model's weights
    gradient_checkpointing: bool = True  # whether activations can be recomputed (not prefix tuning's cached keys)
    new_token_rows: bool = False  # can train the embedding and output rows of tokens added to the vocabulary


ADAPTERS: dict[str, AdapterFacts] = {
    "full": AdapterFacts(None, None, "full fine-tuning", new_token_rows=True),
    "lora": AdapterFacts("peft.LoraConfig", "LORA", "LoRA", low_rank=True, mergeable=True, new_token_rows=True),
    "dora": AdapterFacts("peft.LoraConfig", "LORA", "DoRA", low_rank=True, mergeable=True, new_token_rows=True),
    "prefix": AdapterFacts(
        "peft.PrefixTuningConfig", "PREFIX_TUNING", "prefix tuning", virtual_tokens=True, gradient_checkpointing=False
    ),
    "prompt": AdapterFacts("peft.PromptTuningConfig", "PROMPT_TUNING", "prompt tuning", virtual_tokens=True),
    "p-tuning": AdapterFacts("peft.PromptEncoderConfig", "P_TUNING", "P-tuning", virtual_tokens=True),
    "ia3": AdapterFacts("peft.IA3Config", "IA3", "IA3", mergeable=True),
}


def adapter_facts(kind: str) -> AdapterFacts:
    """The facts of an adapter kind (`lora`, `prefix`, ...)."""
    return ADAPTERS[kind]
