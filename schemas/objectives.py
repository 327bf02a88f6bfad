"""The `objective` section: what the model learns. A union discriminated by `kind`.

Each kind maps to one TRL trainer; field names follow TRL's config classes where
they can (the plan shows TRL's exact names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import Section
from .localpath import HubOrPath, PythonModulePath

# trl.DPOConfig.loss_type values in the TRL version we pin (checked against its source by a test).
DPO_LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)

# Objectives recognised but refused, with the reason shown to the user.
REFUSED_KINDS = {
    "ppo": "value-model PPO (PPOTrainer) is not available in current TRL. For online RL from a reward model use "
    "`kind: rloo` or `kind: grpo` with `reward_model:` set to a trained reward model (e.g. the output of a "
    "`kind: reward` recipe) or with named `reward_functions:`",
}


class SFTObjective(Section):
    """Supervised fine-tuning with cross-entropy on conversations, prompt-completion pairs or text (TRL SFTTrainer)."""

    kind: Literal["sft"] = Field(description="`sft`: supervised fine-tuning.")
    assistant_only_loss: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Conversations (`messages`, `sharegpt`, `ultrachat`, `lima`): compute the loss on the assistant's "
        "turns only, not on the user's questions or the template's tokens. `auto` is true for conversational data. "
        "Needs a chat template that marks assistant turns (`{% generation %}`): the shipped ones do, and TRL patches "
        "some models' own; otherwise `recipe run` refuses and says so. `false` trains on every token.",
    )
    completion_only_loss: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Prompt-completion rows (`prompt-completion`, `alpaca`, `triviaqa`): compute the loss on the "
        "completion only. `auto` is true for such data; `false` also trains on the prompt.",
    )
    neftune_noise_alpha: Optional[float] = Field(
        None,
        gt=0,
        description="NEFTune: add uniform noise of scale alpha / sqrt(length × hidden size) to the input embeddings "
        "while training (transformers' `neftune_noise_alpha`; the paper uses 5 to 15). The length is the row's, so "
        "with packing or padding-free rows a document gets less noise than it would alone. Omit for none.",
    )


class PretrainObjective(Section):
    """Continued pretraining: next-token prediction on raw text (TRL SFTTrainer on a text column)."""

    kind: Literal["pretrain"] = Field(description="`pretrain`: language modelling on raw text.")


class DPOObjective(Section):
    """Direct Preference Optimization and its loss variants (TRL DPOTrainer)."""

    kind: Literal["dpo"] = Field(description="`dpo`: direct preference optimization.")
    beta: float = Field(
        0.1, gt=0, description="Strength of the pull towards the reference model (higher stays closer)."
    )
    loss: list[Literal[DPO_LOSSES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["sigmoid"],
        min_length=1,
        description="DPO loss names (TRL's `loss_type`); several are combined with `loss_weights` (e.g. MPO).",
    )
    loss_weights: Optional[list[float]] = Field(None, description="One weight per entry of `loss`; default all 1.0.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed probability of a flipped preference label (robust DPO, EXO)."
    )


class ORPOObjective(Section):
    """Odds Ratio Preference Optimization: SFT plus an odds-ratio penalty, no reference model (TRL ORPOTrainer)."""

    kind: Literal["orpo"] = Field(description="`orpo`: odds-ratio preference optimization.")
    beta: float = Field(0.1, gt=0, description="Weight λ of the odds-ratio loss relative to the SFT loss.")


class KTOObjective(Section):
    """Kahneman-Tversky Optimization on unpaired desirable/undesirable completions (TRL KTOTrainer)."""

    kind: Literal["kto"] = Field(description="`kto`: Kahneman-Tversky optimization.")
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable examples.")


class SimPOObjective(Section):
    """SimPO: reference-free, length-normalised preference optimization with a margin (TRL CPOTrainer, loss `simpo`)."""

    kind: Literal["simpo"] = Field(description="`simpo`: simple preference optimization.")
    beta: float = Field(2.0, gt=0, description="Reward scale β (the paper uses 2.0-2.5).")
    gamma: float = Field(1.0, ge=0, description="Target reward margin γ (TRL's `simpo_gamma`).")
    cpo_alpha: float = Field(0.0, ge=0, description="Weight of an added SFT loss on chosen responses; 0 is pure SimPO.")


class CPOObjective(Section):
    """Contrastive Preference Optimization: preference loss plus an NLL term, no reference model (TRL CPOTrainer)."""

    kind: Literal["cpo"] = Field(description="`cpo`: contrastive preference optimization.")
    beta: float = Field(0.1, gt=0, description="Temperature of the preference loss.")
    loss: Literal["sigmoid", "hinge", "ipo"] = Field("sigmoid", description="Preference loss (TRL's `loss_type`).")
    cpo_alpha: float = Field(1.0, ge=0, description="Weight of the NLL loss on chosen responses.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed probability of a flipped preference label.")


class RewardObjective(Section):
    """A sequence-classification reward model trained on preference pairs (TRL RewardTrainer)."""

    kind: Literal["reward"] = Field(description="`reward`: train a reward model.")
    center_rewards_coefficient: Optional[float] = Field(
        None,
        ge=0,
        description="Weight of a penalty keeping rewards centred on zero (TRL's `center_rewards_coefficient`).",
    )


class _OnlineRL(Section):
    reward_model: Optional[HubOrPath] = Field(
        None,
        description="Path or id of a sequence-classification reward model, e.g. the output dir of a `reward` recipe.",
    )
    reward_functions: list[PythonModulePath] = Field(
        default_factory=list,
        description="Named reward functions (`module:function` or a name shipped by the runner) "
        "scoring each completion.",
    )
    reward_weights: Optional[list[float]] = Field(
        None, description="One weight per reward source (model first, then functions)."
    )
    max_completion_length: int = Field(512, ge=1, description="Maximum tokens generated per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for generations.")
    generation_batch_size: Optional[int] = Field(
        None, ge=1, description="Prompts × generations sampled per generation round; default the global batch size."
    )


class GRPOObjective(_OnlineRL):
    """Group Relative Policy Optimization: online RL with group-normalised rewards (TRL GRPOTrainer)."""

    kind: Literal["grpo"] = Field(description="`grpo`: group relative policy optimization.")
    num_generations: int = Field(
        8, description="Completions sampled per prompt (at least 2; must divide the generation batch)."
    )
    beta: float = Field(0.0, ge=0, description="KL penalty towards the reference model (0 loads no reference model).")


class RLOOObjective(_OnlineRL):
    """REINFORCE Leave-One-Out: online RL with a leave-one-out baseline (TRL RLOOTrainer)."""

    kind: Literal["rloo"] = Field(description="`rloo`: REINFORCE leave-one-out.")
    num_generations: int = Field(
        2, description="Completions sampled per prompt (at least 2; must divide the generation batch)."
    )
    beta: float = Field(0.05, ge=0, description="KL penalty towards the reference model.")


Objective = Annotated[
    Union[
        SFTObjective,
        PretrainObjective,
        DPOObjective,
        ORPOObjective,
        KTOObjective,
        SimPOObjective,
        CPOObjective,
        RewardObjective,
        GRPOObjective,
        RLOOObjective,
    ],
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class ObjectiveFacts:
    """What the rest of the program needs to know about an objective kind, in one place.

    Resolution (trainer classes, memory profile), the rules (data formats, packing), the data loader (row
    shapes), the training process (reward functions) and the measured step (fused LM head outputs) read this
    table; adding an objective adds a row here and its section class above. Its TRL arguments are the row's
    `trl_args` (section fields, verbatim) and `trl_constants`; only SFT's loss scope is decided in
    `runner/plan/training.py`.
    """

    trainer: str  # TRL trainer class, as an importable dotted name
    config: str  # its config class (a transformers.TrainingArguments subclass)
    families: tuple[str, ...]  # dataset format families the trainer reads (schemas.datasets.FORMATS)
    rows: Literal["as-is", "unpaired", "prompt", "text"]  # how a canonical record is shaped for the trainer
    sequences_per_example: int = 1  # 2 when chosen and rejected (or a KL pair) go through the model together
    reference_model: bool = False  # compares with a frozen reference policy (when its `beta` is above 0)
    generates: bool = False  # samples completions during training (online RL): needs reward sources
    packing: bool = False  # whether packing several sequences into one row applies
    reward_head: bool = False  # the model is a one-score sequence classifier (no vocabulary logits)
    # The trainer casts the adapter of a 4-/8-bit model to bfloat16 (TRL's main trainers, after the QLoRA paper);
    # TRL's experimental ORPO/CPO trainers keep PEFT's float32 adapters.
    quantized_adapter_bf16: bool = True
    # TRL 1.16's SFT/DPO/KTO/GRPO/RLOO trainers score tokens through a fused LM head (`add_fused_lm_head`), in
    # tiles, never holding the [tokens, vocabulary] logits; the experimental ORPO/CPO trainers take the model's logits.
    fused_lm_head: bool = True
    # the tokens the loss is computed on (SFT's depend on its data and settings: see runner/plan/training.py)
    trains_on: str = ""
    # the fewest sequences per micro batch the loss is defined for (KTO estimates its KL term from the other rows)
    min_micro_batch: int = 1
    # TRL config argument <- this objective section's field, in the order the plan shows them
    trl_args: tuple[tuple[str, str], ...] = ()
    # TRL config arguments this kind always sets to one value
    trl_constants: tuple[tuple[str, object], ...] = ()
    # the per-token outputs the trainer asks its fused LM head for (its metrics), as TRL 1.16 adds the head
    fused_outputs: tuple[str, ...] = ("log_probs",)

    @property
    def peft_task_type(self) -> str:
        """PEFT's task type for an adapter on this objective's model."""
        return "SEQ_CLS" if self.reward_head else "CAUSAL_LM"


_ONLINE_RL_ARGS = (
    ("num_generations", "num_generations"),
    ("max_completion_length", "max_completion_length"),
    ("temperature", "temperature"),
    ("beta", "beta"),
    ("generation_batch_size", "generation_batch_size"),
    ("reward_weights", "reward_weights"),
)

OBJECTIVES: dict[str, ObjectiveFacts] = {
    "sft": ObjectiveFacts(
        trainer="trl.SFTTrainer",
        config="trl.SFTConfig",
        families=("conversation", "prompt-completion", "text"),
        rows="as-is",
        packing=True,
        trl_args=(("neftune_noise_alpha", "neftune_noise_alpha"),),
        fused_outputs=("log_probs", "entropy", "is_top1"),
    ),
    "pretrain": ObjectiveFacts(
        trainer="trl.SFTTrainer",
        config="trl.SFTConfig",
        families=("text",),
        rows="text",
        packing=True,
        trains_on="every token of the text",
        trl_constants=(("dataset_text_field", "text"),),
        fused_outputs=("log_probs", "entropy", "is_top1"),
    ),
    "dpo": ObjectiveFacts(
        trainer="trl.DPOTrainer",
        config="trl.DPOConfig",
        families=("preference",),
        rows="as-is",
        sequences_per_example=2,
        reference_model=True,
        trains_on="the chosen and rejected completions: their log-probabilities given the prompt, which is not trained",
        trl_args=(
            ("beta", "beta"),
            ("loss_type", "loss"),
            ("label_smoothing", "label_smoothing"),
            ("loss_weights", "loss_weights"),
        ),
        fused_outputs=("log_probs", "entropy", "mean_logits", "is_top1"),
    ),
    "orpo": ObjectiveFacts(
        trainer="trl.experimental.orpo.ORPOTrainer",
        config="trl.experimental.orpo.ORPOConfig",
        families=("preference",),
        rows="as-is",
        sequences_per_example=2,
        quantized_adapter_bf16=False,
        fused_lm_head=False,
        trains_on="the chosen completion (NLL) and the odds ratio of chosen to rejected; prompts are not trained",
        trl_args=(("beta", "beta"),),
    ),
    "kto": ObjectiveFacts(
        trainer="trl.KTOTrainer",
        config="trl.KTOConfig",
        families=("unpaired-preference", "preference"),
        rows="unpaired",
        sequences_per_example=2,
        reference_model=True,
        trains_on="the completions: their log-probabilities given the prompt, weighted desirable or undesirable",
        min_micro_batch=2,
        trl_args=(
            ("beta", "beta"),
            ("desirable_weight", "desirable_weight"),
            ("undesirable_weight", "undesirable_weight"),
        ),
        fused_outputs=("log_probs", "entropy", "mean_logits"),
    ),
    "simpo": ObjectiveFacts(
        trainer="trl.experimental.cpo.CPOTrainer",
        config="trl.experimental.cpo.CPOConfig",
        families=("preference",),
        rows="as-is",
        sequences_per_example=2,
        quantized_adapter_bf16=False,
        fused_lm_head=False,
        trains_on="the chosen and rejected completions: length-normalised log-probabilities; prompts are not trained",
        trl_constants=(("loss_type", "simpo"),),
        trl_args=(("beta", "beta"), ("simpo_gamma", "gamma"), ("cpo_alpha", "cpo_alpha")),
    ),
    "cpo": ObjectiveFacts(
        trainer="trl.experimental.cpo.CPOTrainer",
        config="trl.experimental.cpo.CPOConfig",
        families=("preference",),
        rows="as-is",
        sequences_per_example=2,
        quantized_adapter_bf16=False,
        fused_lm_head=False,
        trains_on="the chosen and rejected completions, plus NLL on the chosen one; prompts are not trained",
        trl_args=(
            ("loss_type", "loss"),
            ("beta", "beta"),
            ("cpo_alpha", "cpo_alpha"),
            ("label_smoothing", "label_smoothing"),
        ),
    ),
    "reward": ObjectiveFacts(
        trainer="trl.RewardTrainer",
        config="trl.RewardConfig",
        families=("preference",),
        rows="as-is",
        sequences_per_example=2,
        reward_head=True,
        fused_lm_head=False,
        trains_on="one score per sequence, read at its last token, ranking chosen above rejected",
        trl_args=(("center_rewards_coefficient", "center_rewards_coefficient"),),
    ),
    "grpo": ObjectiveFacts(
        trainer="trl.GRPOTrainer",
        config="trl.GRPOConfig",
        families=("prompt-only", "prompt-completion"),
        rows="prompt",
        reference_model=True,
        generates=True,
        trains_on="the sampled completions, weighted by their group-normalised rewards; prompts are not trained",
        trl_args=_ONLINE_RL_ARGS,
    ),
    "rloo": ObjectiveFacts(
        trainer="trl.RLOOTrainer",
        config="trl.RLOOConfig",
        families=("prompt-only", "prompt-completion"),
        rows="prompt",
        reference_model=True,
        generates=True,
        trains_on="the sampled completions, weighted by their leave-one-out advantages; prompts are not trained",
        trl_args=_ONLINE_RL_ARGS,
    ),
}


def facts(kind: str) -> ObjectiveFacts:
    """The facts of an objective kind (`sft`, `dpo`, ...)."""
    return OBJECTIVES[kind]
