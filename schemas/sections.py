"""The plain sections of a recipe: model, quantization, training and output."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field

from .base import Section
from .localpath import HubOrPath, JinjaPath

Dtype = Literal["bfloat16", "float16", "float32", "auto"]

# transformers.trainer_utils.SchedulerType (checked against the installed transformers by a test).
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)
# A subset of transformers.training_args.OptimizerNames that works on one or many GPUs (checked by a test).
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
    "adagrad",
    "rmsprop",
    "lion_8bit",
    "lion_32bit",
    "paged_lion_8bit",
    "paged_lion_32bit",
    "ademamix",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
)
REPORTERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "clearml", "trackio", "none")


class SpecialTokens(Section):
    """Special tokens to set on the tokenizer or add to it (Axolotl's `special_tokens`, LLaMA-Factory's
    `add_special_tokens`). A token the vocabulary lacks is added and the embeddings grow by one row each. A new
    eos or marker must be learned, input and output row alike, which full fine-tuning does; an adapter can use
    tokens the vocabulary already has, and add only a pad token (padding is never trained on). To teach a base
    model to stop with an adapter, the `base` chat template ends each turn with the tokenizer's own eos."""

    pad: Optional[str] = Field(None, description="The padding token, e.g. `<pad>`; default the tokenizer's, else eos.")
    eos: Optional[str] = Field(
        None,
        description="The end-of-sequence token generation stops at, e.g. `<|im_end|>` for ChatML on a base model.",
    )
    additional: list[str] = Field(
        default_factory=list,
        description="More special tokens, e.g. a chat template's markers `[<|im_start|>, <|im_end|>]`.",
    )

    @property
    def all(self) -> list[str]:
        return [t for t in (self.pad, self.eos, *self.additional) if t]


class Model(Section):
    """The base model to fine-tune and how to load it."""

    name_or_path: HubOrPath = Field(
        min_length=1,
        description="A model id on the Hugging Face Hub (e.g. `meta-llama/Meta-Llama-3-8B`) or a local directory "
        "holding `config.json` and weights: relative to the recipe file, and taken as local when it starts with "
        "`./`, `../`, `/` or `~` or exists there.",
    )
    revision: Optional[str] = Field(None, description="A branch, tag or commit of the model repository to pin.")
    dtype: Dtype = Field(
        "auto",
        description="Data type of the weights in memory. `auto` takes bfloat16 where the hardware supports it, "
        "float16 on older GPUs and float32 on CPU.",
    )
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto",
        description="Attention implementation. `auto` picks FlashAttention-2 on Ampere or newer when the `flash-attn` "
        "package is installed, else PyTorch's scaled-dot-product attention (`sdpa`).",
    )
    trust_remote_code: bool = Field(
        False,
        description="Allow the model repository to run its own Python code. Honoured only when `recipe run` is also "
        "given `--trust-remote-code`, so a shared recipe cannot run remote code silently.",
    )
    tokenizer: Optional[HubOrPath] = Field(
        None, description="Tokenizer id or directory, when it differs from the model's."
    )
    special_tokens: SpecialTokens = Field(
        default_factory=SpecialTokens, description="Special tokens to set on the tokenizer or add to it."
    )
    chat_template: Optional[JinjaPath] = Field(
        None,
        description="Chat template: omit to use the tokenizer's own (a tokenizer without one, as base models have, "
        "gets ChatML when its vocabulary has ChatML's markers, else `base`, which ends each assistant turn with the "
        "tokenizer's end-of-sequence token); name a shipped one (`base`, `chatml`, `llama3`), or give the path of "
        "a `.jinja` file.",
    )


class Quantization(Section):
    """Load the frozen base weights quantized with bitsandbytes (4-bit with an adapter is QLoRA)."""

    method: Literal["none", "bnb-4bit", "bnb-8bit"] = Field(
        "none", description="`bnb-4bit` (QLoRA), `bnb-8bit` (LLM.int8()) or `none` for unquantized weights."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type: NormalFloat4 (`nf4`, the QLoRA paper's) or `fp4`."
    )
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (saves about 0.4 bits per parameter)."
    )
    compute_dtype: Dtype = Field(
        "auto",
        description="Data type the 4-bit weights are dequantized to for matrix multiplies; `auto` "
        "follows the model's dtype.",
    )
    quant_storage: Literal["auto", "uint8", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Storage type of packed 4-bit weights. `auto` is `uint8`, except under ZeRO-3, where it is "
        "the dtype the model loads in (`model.dtype`) so that DeepSpeed can shard the packed weights together "
        "with the rest of the model.",
    )
    skip_modules: list[str] = Field(
        default_factory=list,
        description="Modules kept unquantized (e.g. `lm_head`); passed as `llm_int8_skip_modules`.",
    )


class Training(Section):
    """Optimisation: schedule, batch arithmetic, sequence length, checkpointing and logging."""

    epochs: float = Field(1.0, gt=0, description="Number of passes over the training data (may be fractional).")
    max_steps: Optional[int] = Field(
        None, gt=0, description="Stop after this many optimizer steps; overrides `epochs`."
    )
    learning_rate: float = Field(gt=0, lt=1, description="Peak learning rate.")
    lr_scheduler: Literal[LR_SCHEDULERS] = Field(
        "linear", description="Learning-rate schedule after warm-up (transformers' `SchedulerType`)."
    )  # type: ignore[valid-type]
    lr_scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra arguments of the schedule, e.g. `{num_cycles: 3}` for `cosine_with_restarts`.",
    )
    warmup_ratio: Optional[float] = Field(
        None, ge=0, lt=1, description="Fraction of the training steps spent warming up. Give this or `warmup_steps`."
    )
    warmup_steps: Optional[int] = Field(None, ge=0, description="Number of warm-up steps. Give this or `warmup_ratio`.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW).")
    optimizer: Literal[OPTIMIZERS] = Field("adamw_torch", description="Optimizer (transformers' `optim` names).")  # type: ignore[valid-type]
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping by global norm; 0 disables clipping.")
    bad_steps_allowed: int = Field(
        0,
        ge=0,
        description="Optimizer steps whose loss or gradients are not finite (NaN or inf) a run tolerates, each "
        "skipped (the weights are left as they were); one more stops the run, naming the step, with its last "
        "checkpoint kept as the last good one. 0: the first such step stops it. Under DeepSpeed the first stops it.",
    )
    global_batch_size: int = Field(
        ge=1,
        description="Sequences per optimizer step across all processes = micro_batch_size × "
        "gradient accumulation × world size.",
    )
    micro_batch_size: Union[int, Literal["auto"]] = Field(
        "auto",
        description="Sequences per process per forward pass. `auto` picks the largest power of two "
        "that fits the memory.",
    )
    max_length: int = Field(
        1024,
        ge=8,
        description="Maximum tokens per training sequence (prompt and completion together); longer ones are truncated.",
    )
    gradient_checkpointing: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Recompute activations in the backward pass to save memory. `auto` turns it on "
        "only when needed to fit.",
    )
    master_weights: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Full fine-tuning: the dtype of the weights the optimizer updates. `auto` (and `float32`) keeps "
        "float32 master weights under bf16/fp16 mixed precision: without DeepSpeed the model loads in float32 and "
        "the forward pass runs under autocast; with DeepSpeed the model is 16-bit and DeepSpeed's optimizer keeps "
        "float32 copies. `bfloat16` (with `model.dtype: bfloat16`, no DeepSpeed) trains in pure bfloat16: half the "
        "memory for weights, gradients and optimizer states, but updates smaller than bfloat16's resolution are "
        "lost (at learning rates around 1e-6, most of them). Adapters always train in float32.",
    )
    packing: bool = Field(
        False,
        description="Pack several short sequences into rows of `max_length` tokens (SFT and pretraining only; TRL's "
        "best-fit-decreasing packing). Each document's position ids restart at 0, which is what keeps documents from "
        "attending to each other; models that ignore them are refused (see the plan's `packing` decision).",
    )
    padding_free: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Concatenate a micro batch's sequences into one row without padding (SFT and pretraining only). "
        "`auto`: on with packing (TRL's packing is padding-free), off otherwise. `true` without packing removes the "
        "padding of variable-length rows; `false` with packing is refused (documents would attend across their "
        "boundaries).",
    )
    kernels: Literal["auto", "none", "liger"] = Field(
        "auto",
        description="Fused training kernels. `liger`: Liger's Triton kernels (RMSNorm, SwiGLU/GeGLU, RoPE) through "
        "TRL's `use_liger_kernel`; GPU only, needs `pip install liger-kernel`, for the model types Liger patches. "
        "`auto`: Liger where it is installed, on a GPU, for a model it supports; otherwise none.",
    )
    eval_every: Optional[int] = Field(
        None, gt=0, description="Evaluate every this many optimizer steps (needs eval data)."
    )
    evals_per_epoch: Optional[int] = Field(
        None,
        gt=0,
        description="Evaluate this many times per epoch, evenly spaced, instead of every N steps (Axolotl's "
        "`evals_per_epoch`). 1 evaluates at the end of each epoch; more become a fraction of the run's steps "
        "(transformers' `eval_steps` below 1, rounded up). Needs `epochs`, not `max_steps`. Without this or "
        "`eval_every`, a run with eval data evaluates once per epoch.",
    )
    eval_on_start: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Evaluate once before the first step, the baseline later evaluations are compared with. "
        "`auto`: when there is eval data.",
    )
    save_every: Optional[int] = Field(
        None,
        gt=0,
        description="Save a checkpoint every this many optimizer steps; omit to save at the end of each epoch.",
    )
    saves_per_epoch: Optional[int] = Field(
        None,
        gt=0,
        description="Save this many checkpoints per epoch, evenly spaced, instead of every N steps (Axolotl's "
        "`saves_per_epoch`); 1 is the default, once per epoch. Needs `epochs`, not `max_steps`.",
    )
    save_only_model: bool = Field(
        False,
        description="Checkpoints hold the trained weights only, without the optimizer, scheduler and random states "
        "(transformers' `save_only_model`): smaller and faster to write, but a run cannot `--resume` from them.",
    )
    save_total_limit: Union[Annotated[int, Field(gt=0)], Literal["auto", "all"]] = Field(
        "auto",
        description="Checkpoints kept, the oldest deleted first: a number, `all`, or `auto`: the last two, plus the "
        "one with the lowest eval loss when there is eval data (`--resume` continues from the last).",
    )
    tf32: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="TensorFloat-32 matrix multiplies on Ampere or newer GPUs: float32 products (those outside "
        "bf16/fp16 autocast, e.g. a float32 run, the loss and optimizer maths) use 10-bit mantissas, several times "
        "faster. `auto`: on where the GPU has it (compute capability 8.0 or newer), otherwise not set (PyTorch's "
        "default, off). `true` where the GPU lacks it is refused; `false` keeps full float32 products.",
    )
    logging_every: int = Field(10, gt=0, description="Log metrics every this many optimizer steps.")
    seed: int = Field(42, ge=0, description="Random seed for initialisation, data order and dropout.")


class Output(Section):
    """Where results go and which trackers receive metrics."""

    dir: Optional[str] = Field(
        None,
        description="Output directory for the adapter or model, checkpoints and logs; default `outputs/<name>`. A "
        "relative path is relative to the directory `recipe run` is started in (not the recipe file); `~` is your "
        "home directory. It must be new, empty or an earlier run's: a run refuses a directory holding files no run "
        "wrote, a symlink, or the recipe, its data or model, and `--overwrite` removes only what a run wrote.",
    )
    report_to: list[Literal[REPORTERS]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="Experiment trackers to log to, e.g. `[tensorboard]` or `[wandb]`."
    )
    run_name: Optional[str] = Field(None, description="Run name shown in trackers; default the recipe's `name`.")
