"""Cross-field rules: one table, each rule an id, a summary and a check over a validated recipe.

A check yields `(path, message)` pairs; the path locates the diagnostic in the
recipe's YAML. `recipe validate --format json` reports the rule id, and
`docs/recipe-reference.md` lists the table. Every rule has a failing and a
passing test in `tests/test_rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .datasets import FORMATS
from .diagnostics import Diagnostic, Location, did_you_mean
from .objectives import DPOObjective, GRPOObjective, RLOOObjective, facts
from .recipe import Recipe
from .yamlsource import Sources, dotted

Finding = tuple[tuple, str]
Check = Callable[[Recipe], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str
    check: Check
    severity: str = "error"


RULES: list[Rule] = []


def rule(id: str, summary: str, severity: str = "error") -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        RULES.append(Rule(id, summary, fn, severity))
        return fn

    return register


def _sources(r: Recipe) -> Iterator[tuple[tuple, object]]:
    for split in ("train", "eval"):
        for i, entry in enumerate(getattr(r.datasets, split)):
            yield ("datasets", split, i), entry


@rule(
    "quantization-needs-adapter",
    "A quantized base model trains only through an adapter (bnb-4bit with lora/dora is QLoRA).",
)
def _quantization_needs_adapter(r: Recipe) -> Iterable[Finding]:
    if r.is_quantized and r.adapter.kind == "full":
        yield (
            ("quantization", "method"),
            (
                f"{r.quantization.method} weights cannot be trained directly: use an adapter (e.g. "
                f"`adapter: {{kind: lora}}`, "
                "which with bnb-4bit is QLoRA) or set `quantization.method: none` for full fine-tuning"
            ),
        )


@rule("objective-dataset-format", "Each objective reads certain dataset formats (e.g. DPO needs preference pairs).")
def _objective_dataset_format(r: Recipe) -> Iterable[Finding]:
    families = facts(r.objective.kind).families
    fitting = [name for name, f in FORMATS.items() if f.family in families]
    for path, entry in _sources(r):
        if entry.spec.family not in families:
            yield (
                path + ("format",),
                (
                    f"objective '{r.objective.kind}' cannot train on format '{entry.format}' "
                    f"({entry.spec.family} rows); "
                    f"it reads: {', '.join(fitting)}"
                ),
            )


@rule("online-rl-reward-source", "GRPO and RLOO need a reward model or reward functions.")
def _online_rl_reward(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if facts(o.kind).generates and not o.reward_model and not o.reward_functions:
        yield (
            ("objective",),
            (
                f"'{o.kind}' scores its own generations: set `reward_model:` (e.g. the output "
                f"directory of a `kind: reward` "
                "recipe) or `reward_functions:`"
            ),
        )


@rule("online-rl-reward-weights", "GRPO/RLOO reward_weights has one weight per reward source.")
def _online_rl_reward_weights(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if facts(o.kind).generates and o.reward_weights is not None:
        n = (1 if o.reward_model else 0) + len(o.reward_functions)
        if len(o.reward_weights) != n:
            yield (
                ("objective", "reward_weights"),
                f"{len(o.reward_weights)} weights given for {n} reward sources (reward model first, then functions)",
            )


@rule(
    "online-rl-num-generations",
    "GRPO/RLOO sample at least 2 completions per prompt, and that number divides the generation batch.",
)
def _num_generations(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if not isinstance(o, (GRPOObjective, RLOOObjective)):
        return
    if o.num_generations < 2:
        yield (
            ("objective", "num_generations"),
            (
                f"num_generations is {o.num_generations}; group-relative advantages need at least 2 "
                f"completions per prompt"
            ),
        )
        return
    batch = o.generation_batch_size or r.training.global_batch_size
    name = "objective.generation_batch_size" if o.generation_batch_size else "training.global_batch_size"
    if batch % o.num_generations:
        yield (
            ("objective", "num_generations"),
            (
                f"num_generations {o.num_generations} does not divide the generation batch ({name} = {batch}); "
                f"choose a divisor of {batch} or a batch that is a multiple of {o.num_generations}"
            ),
        )


@rule(
    "prefix-vs-gradient-checkpointing",
    "Prefix tuning cannot be combined with gradient checkpointing (PEFT refuses it).",
)
def _prefix_gc(r: Recipe) -> Iterable[Finding]:
    if r.adapter.kind == "prefix" and r.training.gradient_checkpointing is True:
        yield (
            ("training", "gradient_checkpointing"),
            (
                "prefix tuning's past key/values cannot be recomputed under gradient checkpointing; "
                "set `gradient_checkpointing: false` (or `auto`)"
            ),
        )


@rule("master-weights-full-only", "training.master_weights applies to full fine-tuning; adapters train in float32.")
def _master_weights_full(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights != "auto" and r.adapter.kind != "full":
        yield (
            ("training", "master_weights"),
            (
                f"a {r.adapter.kind} adapter's weights always train in float32 (PEFT keeps them so) while the base "
                "stays frozen; remove `master_weights` or set it to `auto`"
            ),
        )


@rule("pure-bf16-needs-bf16", "Pure bfloat16 training (master_weights: bfloat16) needs model.dtype: bfloat16.")
def _pure_bf16_dtype(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights == "bfloat16" and r.model.dtype != "bfloat16":
        yield (
            ("training", "master_weights"),
            (
                f"pure bfloat16 training updates bfloat16 weights, but model.dtype is {r.model.dtype}; set "
                "`model.dtype: bfloat16`, or `master_weights: auto` for float32 master weights"
            ),
        )


@rule("pure-bf16-vs-deepspeed", "DeepSpeed always keeps float32 master weights: pure bfloat16 runs without ZeRO.")
def _pure_bf16_zero(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights == "bfloat16" and r.hardware.zero not in ("auto", "none"):
        yield (
            ("training", "master_weights"),
            (
                f"DeepSpeed ZeRO-{r.hardware.zero} keeps float32 master copies of the weights in its optimizer, so "
                "pure bfloat16 is not available with it; set `hardware.zero: none` or `master_weights: auto`"
            ),
        )


@rule("offload-replaces-optimizer", "Offloaded optimizer states run DeepSpeed's CPU AdamW: other optimizers refused.")
def _offload_optimizer(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload in ("optimizer", "all") and r.training.optimizer not in ("adamw_torch", "adamw_torch_fused"):
        yield (
            ("training", "optimizer"),
            (
                f"with `hardware.offload: {r.hardware.offload}` the optimizer runs in CPU memory as DeepSpeed's CPU "
                f"AdamW, not {r.training.optimizer}; use `optimizer: adamw_torch`, or `offload: none`"
            ),
        )


@rule(
    "loss-scope-vs-format",
    "assistant_only_loss needs conversations; completion_only_loss needs prompt-completion rows.",
)
def _loss_scope(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if o.kind != "sft":
        return
    for path, entry in _sources(r):
        family = entry.spec.family
        if o.assistant_only_loss is True and family != "conversation":
            yield (
                ("objective", "assistant_only_loss"),
                (
                    f"loss on assistant turns needs conversations, but {dotted(path)} is format '{entry.format}' "
                    f"({family} rows); remove `assistant_only_loss` (for prompt-completion rows `completion_only_loss` "
                    "does the same)"
                ),
            )
            return
        if o.completion_only_loss is True and family != "prompt-completion":
            yield (
                ("objective", "completion_only_loss"),
                (
                    f"loss on completions needs prompt-completion rows, but {dotted(path)} is format '{entry.format}' "
                    f"({family} rows); remove `completion_only_loss` (for conversations, `assistant_only_loss` does "
                    "the same)"
                ),
            )
            return


@rule("special-tokens-need-trainable-embeddings", "New eos or marker tokens are learned by full fine-tuning (or LoRA).")
def _special_tokens(r: Recipe) -> Iterable[Finding]:
    tokens = r.model.special_tokens
    if (tokens.eos or tokens.additional) and r.adapter.kind not in ("full", "lora", "dora"):
        yield (
            ("model", "special_tokens"),
            (
                f"a {r.adapter.kind} adapter leaves the model's embeddings and output layer as they are, so a new "
                "end-of-sequence token or marker could not be learned; use full fine-tuning, or LoRA with tokens "
                "the tokenizer already has (`chat_template: base` ends each turn with its own eos)"
            ),
        )


@rule("bnb-8bit-vs-zero3", "8-bit bitsandbytes weights cannot be sharded by ZeRO-3.")
def _bnb8_zero3(r: Recipe) -> Iterable[Finding]:
    if r.quantization.method == "bnb-8bit" and r.hardware.zero == 3:
        yield (
            ("hardware", "zero"),
            "ZeRO-3 cannot partition bnb-8bit weights; use bnb-4bit (QLoRA) with ZeRO-3, or ZeRO 0-2 with bnb-8bit",
        )


@rule("param-offload-needs-zero3", "Offloading parameters (offload: all) needs ZeRO stage 3.")
def _param_offload(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload == "all" and r.hardware.zero in ("none", 0, 1, 2):
        yield (
            ("hardware", "offload"),
            f"parameter offload needs ZeRO-3, but `zero` is {r.hardware.zero}; set `zero: 3` (or "
            f"`auto`) or `offload: optimizer`",
        )


@rule("offload-needs-zero", "Offloading optimizer states needs ZeRO stage 1 or higher.")
def _optimizer_offload(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload == "optimizer" and r.hardware.zero in ("none", 0):
        yield ("hardware", "offload"), f"optimizer offload needs ZeRO stage 1, 2 or 3, but `zero` is {r.hardware.zero}"


def _bf16_fields(r: Recipe) -> Iterator[tuple]:
    if r.model.dtype == "bfloat16":
        yield ("model", "dtype")
    if r.is_quantized and r.quantization.compute_dtype == "bfloat16":
        yield ("quantization", "compute_dtype")


@rule("bf16-needs-ampere", "bfloat16 needs a GPU of compute capability 8.0 or newer (Ampere).")
def _bf16_ampere(r: Recipe) -> Iterable[Finding]:
    hw = r.hardware.resolved_profile()
    if hw.is_gpu and not hw.bf16:
        for path in _bf16_fields(r):
            yield (
                path,
                (
                    f"{hw.name} (compute capability {hw.compute_capability}) has no bfloat16; use "
                    f"`float16` (trained with loss "
                    "scaling) or `auto`"
                ),
            )


@rule("flash-attention-needs-ampere", "FlashAttention-2 needs a GPU of compute capability 8.0 or newer.")
def _fa2_ampere(r: Recipe) -> Iterable[Finding]:
    if r.model.attention != "flash_attention_2":
        return
    hw = r.hardware.resolved_profile()
    if not hw.is_gpu:
        yield (
            ("model", "attention"),
            "FlashAttention-2 runs only on NVIDIA GPUs; this recipe targets a CPU. Use `sdpa` or `auto`",
        )
    elif (hw.compute_capability or 0) < 8.0:
        yield (
            ("model", "attention"),
            f"FlashAttention-2 needs compute capability 8.0+, {hw.name} has "
            f"{hw.compute_capability}; use `sdpa` or `auto`",
        )


@rule("flash-attention-vs-float32", "FlashAttention-2 computes in float16/bfloat16 only.")
def _fa2_fp32(r: Recipe) -> Iterable[Finding]:
    if r.model.attention == "flash_attention_2" and r.model.dtype == "float32":
        yield (
            ("model", "attention"),
            "FlashAttention-2 does not run in float32; set `model.dtype` to bfloat16/float16 or use `sdpa`",
        )


@rule("batch-divisibility", "global_batch_size must equal micro_batch_size × gradient accumulation × world size.")
def _batch(r: Recipe) -> Iterable[Finding]:
    t, world = r.training, r.hardware.world_size
    if t.micro_batch_size == "auto":
        if t.global_batch_size % world:
            yield (
                ("training", "global_batch_size"),
                (
                    f"global_batch_size {t.global_batch_size} is not divisible by the world size {world} "
                    f"({r.hardware.gpus_per_node} per node × {r.hardware.nodes} nodes)"
                ),
            )
        return
    per_step = t.micro_batch_size * world
    if t.global_batch_size % per_step:
        lower = t.global_batch_size // per_step * per_step
        options = [str(x) for x in (lower, lower + per_step) if x > 0]
        yield (
            ("training", "global_batch_size"),
            (
                f"global_batch_size {t.global_batch_size} is not a multiple of micro_batch_size × world size = "
                f"{t.micro_batch_size} × {world} = {per_step}, so gradient accumulation would not be a whole number; "
                f"use {' or '.join(options)}"
            ),
        )


@rule("warmup-steps-and-ratio", "Give warmup_steps or warmup_ratio, not both.")
def _warmup(r: Recipe) -> Iterable[Finding]:
    if r.training.warmup_steps is not None and r.training.warmup_ratio is not None:
        yield ("training", "warmup_steps"), "both `warmup_steps` and `warmup_ratio` are set; keep one"


@rule("dpo-loss-weights-length", "DPO loss_weights has one weight per loss name.")
def _dpo_weights(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if isinstance(o, DPOObjective) and o.loss_weights is not None and len(o.loss_weights) != len(o.loss):
        yield (
            ("objective", "loss_weights"),
            f"{len(o.loss_weights)} weights for {len(o.loss)} losses ({', '.join(o.loss)}); give one weight per loss",
        )


@rule("kto-micro-batch", "KTO needs at least 2 sequences per forward pass to estimate its KL term.")
def _kto_batch(r: Recipe) -> Iterable[Finding]:
    if r.objective.kind == "kto" and r.training.micro_batch_size == 1:
        yield (
            ("training", "micro_batch_size"),
            "KTO estimates its KL term from other rows of the micro batch; with 1 it equals the "
            "implied reward. Use 2 or more",
        )


@rule("packing-needs-sft", "Packing applies to SFT and pretraining only.")
def _packing(r: Recipe) -> Iterable[Finding]:
    if r.training.packing and not facts(r.objective.kind).packing:
        yield (
            ("training", "packing"),
            f"'{r.objective.kind}' compares whole sequences, which packing would mix; set `packing: false`",
        )


@rule("padding-free-needs-sft", "Padding-free batches apply to SFT and pretraining only.")
def _padding_free(r: Recipe) -> Iterable[Finding]:
    if r.training.padding_free is True and not facts(r.objective.kind).packing:
        yield (
            ("training", "padding_free"),
            f"TRL 1.16's '{r.objective.kind}' trainer has no padding-free batches (its DPO trainer turns the "
            "setting off with a warning since a refactor); remove `padding_free`",
        )


@rule("packing-keeps-documents-apart", "Packing needs padding-free rows, whose position ids keep documents apart.")
def _packing_apart(r: Recipe) -> Iterable[Finding]:
    if r.training.packing and r.training.padding_free is False:
        yield (
            ("training", "padding_free"),
            "TRL packs without padding-free rows only with its 'wrapped' strategy, whose documents attend across "
            "their boundaries; remove `padding_free: false`, or set `packing: false`",
        )


@rule("dataset-columns", "`columns` maps a format's canonical column names to the file's names.")
def _columns(r: Recipe) -> Iterable[Finding]:
    for path, entry in _sources(r):
        canonical = entry.spec.columns
        for key in entry.columns:
            if key not in canonical:
                yield (
                    path + ("columns", key),
                    (
                        f"'{key}' is not a column of format '{entry.format}'.{did_you_mean(key, canonical)} "
                        f"Its columns: {', '.join(canonical)} (write `{{canonical: name_in_file}}`)"
                    ),
                )


@rule("mixture-weight-vs-samples", "A mixture uses weights or sample counts, not both.")
def _mixture(r: Recipe) -> Iterable[Finding]:
    for split in ("train", "eval"):
        entries = getattr(r.datasets, split)
        weighted = [i for i, e in enumerate(entries) if e.weight is not None]
        counted = [i for i, e in enumerate(entries) if e.samples is not None]
        if weighted and counted:
            yield (
                ("datasets", split, counted[0], "samples"),
                "this mixture mixes `weight` and `samples`; use one of them on every source",
            )


@rule("eval-without-data", "Evaluation every N steps (or N times per epoch) needs eval data or eval_fraction.")
def _eval_data(r: Recipe) -> Iterable[Finding]:
    if r.datasets.eval or r.datasets.eval_fraction is not None:
        return
    for field in ("eval_every", "evals_per_epoch"):
        if getattr(r.training, field):
            yield (
                ("training", field),
                "there is nothing to evaluate on: add `datasets.eval` or `datasets.eval_fraction`",
            )


@rule("steps-or-per-epoch", "Evaluate (or save) every N steps or N times per epoch, not both.")
def _steps_or_per_epoch(r: Recipe) -> Iterable[Finding]:
    t = r.training
    for steps, per_epoch in (("eval_every", "evals_per_epoch"), ("save_every", "saves_per_epoch")):
        if getattr(t, steps) and getattr(t, per_epoch):
            yield ("training", per_epoch), f"`{steps}` is also set and would win; keep one of them"


@rule("per-epoch-needs-epochs", "Evaluations or saves per epoch count epochs: they need `epochs`, not `max_steps`.")
def _per_epoch_needs_epochs(r: Recipe) -> Iterable[Finding]:
    t = r.training
    if t.max_steps is None:
        return
    for field, steps in (("evals_per_epoch", "eval_every"), ("saves_per_epoch", "save_every")):
        if getattr(t, field):
            yield (
                ("training", field),
                f"`max_steps` ends the run by steps, so an epoch's length is unknown here; use `{steps}` (steps) or "
                "drop `max_steps` and set `epochs`",
            )


@rule("tf32-needs-ampere", "TF32 matrix multiplies need an NVIDIA GPU of compute capability 8.0 or newer.")
def _tf32_ampere(r: Recipe) -> Iterable[Finding]:
    hw = r.hardware.resolved_profile()
    if r.training.tf32 is True and not (hw.is_gpu and (hw.compute_capability or 0) >= 8.0):
        where = "a CPU" if not hw.is_gpu else f"{hw.name} (compute capability {hw.compute_capability})"
        yield ("training", "tf32"), f"{where} has no TF32 (transformers refuses `tf32`); use `auto` or `false`"


@rule(
    "neftune-with-packing",
    "NEFTune scales its noise by the row's length: packed or padding-free rows give each document less.",
    severity="warning",
)
def _neftune_packing(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if getattr(o, "neftune_noise_alpha", None) and (r.training.packing or r.training.padding_free is True):
        yield (
            ("objective", "neftune_noise_alpha"),
            "noise is alpha / sqrt(row length × hidden size), and a packed row holds several documents, so each gets "
            "less noise than alone (by the square root of the row's length over its own); raise alpha or turn "
            "packing off to match unpacked NEFTune",
        )


@rule("eval-on-start-without-data", "An evaluation before the first step needs eval data.")
def _eval_on_start(r: Recipe) -> Iterable[Finding]:
    if r.training.eval_on_start is True and not r.datasets.eval and r.datasets.eval_fraction is None:
        yield (
            ("training", "eval_on_start"),
            "there is nothing to evaluate on: add `datasets.eval` or `datasets.eval_fraction`",
        )


@rule("eval-data-twice", "Give eval datasets or eval_fraction, not both.")
def _eval_twice(r: Recipe) -> Iterable[Finding]:
    if r.datasets.eval and r.datasets.eval_fraction is not None:
        yield ("datasets", "eval_fraction"), "`datasets.eval` is given, so `eval_fraction` would be ignored; keep one"


@rule(
    "trust-remote-code",
    "trust_remote_code runs code from the model repository; it is honoured only with `recipe run --trust-remote-code`.",
    severity="warning",
)
def _remote_code(r: Recipe) -> Iterable[Finding]:
    if r.model.trust_remote_code:
        yield (
            ("model", "trust_remote_code"),
            (
                "this recipe asks to run the model repository's own code; `recipe run` honours it only when also given "
                "`--trust-remote-code`"
            ),
        )


@rule(
    "win-rate-needs-reward-model",
    "A `win-rate` evaluation task needs a reward model: its own `reward_model` or `objective.reward_model`.",
)
def _win_rate_reward_model(r: Recipe) -> Iterable[Finding]:
    for i, task in enumerate(r.evaluation.tasks):
        if task.kind == "win-rate" and not task.reward_model and not getattr(r.objective, "reward_model", None):
            yield (
                ("evaluation", "tasks", i),
                "nothing scores the answers: set `reward_model` (a reward run's output directory or a Hub id)",
            )


@rule("eval-task-names-unique", "Each evaluation task has its own name (results are kept by name).")
def _eval_names(r: Recipe) -> Iterable[Finding]:
    seen: dict[str, int] = {}
    for i, task in enumerate(r.evaluation.tasks):
        if task.label in seen:
            yield (
                ("evaluation", "tasks", i),
                f"task {i} is named '{task.label}' like task {seen[task.label]}; give one a different `name`",
            )
        seen.setdefault(task.label, i)


@rule("eval-needs-tasks", "`evaluation.at_end` and `compare_base` need at least one task.")
def _eval_needs_tasks(r: Recipe) -> Iterable[Finding]:
    e = r.evaluation
    for flag in ("at_end", "compare_base"):
        if getattr(e, flag) and not e.tasks:
            yield ("evaluation", flag), "there is nothing to evaluate: add `evaluation.tasks`"


@rule(
    "vllm-serves-lora-or-full",
    "vLLM generates with LoRA adapters and whole models only.",
)
def _vllm_adapters(r: Recipe) -> Iterable[Finding]:
    if r.evaluation.backend == "vllm" and r.adapter.kind not in ("lora", "full"):
        yield (
            ("evaluation", "backend"),
            f"vLLM cannot apply a {r.adapter.kind} adapter; use `backend: transformers`, or evaluate the merged "
            "model (`recipe merge`, then `recipe eval MERGED_DIR`)",
        )


def check(recipe: Recipe, sources: Sources, file: str) -> list[Diagnostic]:
    """Run every rule; one located diagnostic per finding."""
    out = []
    for r in RULES:
        for path, message in r.check(recipe):
            location = sources.locate(path) or Location(file, 1, 1)
            out.append(Diagnostic(location, dotted(path), message, r.id, r.severity))
    return out
