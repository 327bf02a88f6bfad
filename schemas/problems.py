"""One type for everything a check before launch finds: `Problem(path, message, rule, severity)`.

The schema's cross-field rules (schemas/rules), the plan (runner/plan) and the checks `recipe run` makes before it
spawns anything (runner/run/preflight.py) all report Problems: a recipe field (the path, which the loader turns into
FILE:LINE:COL), what is wrong and what to do, and a rule id that CI can search for. The rules' ids live in their
table (schemas.rules.RULES); the plan's and the preflight's are declared below, so that the generated reference
lists every id, and tests/test_problems.py has a case that trips and a case that passes each one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A reason the recipe cannot run (or, with severity `warning`, something to know), located at a recipe field."""

    path: tuple  # the recipe field, e.g. ("training", "micro_batch_size"); () for the recipe as a whole
    message: str
    rule: str
    severity: str = "error"

    @property
    def field(self) -> str:
        return ".".join(map(str, self.path))


@dataclass(frozen=True)
class Check:
    """A check made outside the schema's rules table: its id, when it runs, and what it refuses."""

    id: str
    stage: str  # plan | preflight
    summary: str
    severity: str = "error"


_PLAN = [
    Check("fp16-needs-gpu", "plan", "float16 mixed precision needs a GPU."),
    Check("attention-unsupported", "plan", "The model type offers the attention implementation the recipe sets."),
    Check("packing-contaminates", "plan", "Packed or padding-free rows of this model type would mix documents."),
    Check(
        "packing-unverified",
        "plan",
        "Packing a model type not measured to keep documents apart (a warning).",
        "warning",
    ),
    Check("kernels-need-gpu", "plan", "Liger's kernels are Triton GPU kernels."),
    Check("kernels-unsupported-model", "plan", "Liger has kernels for the model type."),
    Check("mamba-lora-targets", "plan", "A Mamba model's LoRA targets are ones PEFT accepts and that train."),
    Check("mamba-quantized-dt-proj", "plan", "A Mamba model keeps dt_proj unquantized."),
    Check(
        "memory-unknown", "plan", "Memory is not estimated for a model whose shape is unknown (a warning).", "warning"
    ),
    Check("memory-fit", "plan", "The smallest plan fits the GPU's memory (and its offload the CPU's)."),
    Check("memory-estimate", "plan", "Adapter target modules the estimate does not know (a warning).", "warning"),
    Check("quant-storage-vs-zero3", "plan", "Under ZeRO-3 the packed 4-bit weights are stored in the load dtype."),
]

_PREFLIGHT = [
    Check(
        "output-dir-not-a-run",
        "preflight",
        "A run writes only into a new or empty directory or a run's; --overwrite removes only what a run wrote.",
    ),
    Check(
        "output-dir-unsafe",
        "preflight",
        "output.dir is not /, the home or current directory, nor holds the recipe, its data or model.",
    ),
    Check("output-dir-symlink", "preflight", "No output is written through a symlink: output.dir holds no link."),
    Check("output-dir-unwritable", "preflight", "output.dir can be written."),
    Check("output-dir-finished", "preflight", "A finished run is not overwritten without --overwrite."),
    Check("output-dir-unfinished", "preflight", "Checkpoints of an unfinished run need --resume or --overwrite."),
    Check("resume-without-checkpoint", "preflight", "--resume needs a checkpoint to continue from."),
    Check("resume-weights-only", "preflight", "--resume needs optimizer and schedule states (not save_only_model)."),
    Check("node-environment", "preflight", "A multi-node run knows this node's rank and the rank-0 address."),
    Check("tracker-missing", "preflight", "Each output.report_to tracker is installed."),
    Check("tracker-credentials", "preflight", "wandb can log: credentials, or offline mode."),
    Check("package-missing", "preflight", "The packages the plan needs are installed."),
    Check("model-missing", "preflight", "A local model (or tokenizer) path is a model directory."),
    Check("chat-template-missing", "preflight", "model.chat_template is a shipped template or a .jinja file."),
    Check(
        "chat-template-render",
        "preflight",
        "The chat template renders a conversation in a limited sandbox (no error, bounded size, steps and time).",
    ),
    Check("start-adapter-missing", "preflight", "adapter.start_from is a directory with adapter_config.json."),
    Check("start-adapter-shape", "preflight", "adapter.start_from has the recipe's adapter kind and shape."),
    Check("special-tokens-untrainable", "preflight", "An adapter cannot train tokens new to the vocabulary."),
    Check("turn-end-token", "preflight", "An assistant turn ends with a token generation stops at."),
    Check("assistant-mask", "preflight", "assistant_only_loss needs a template that marks assistant turns."),
    Check("data-unreadable", "preflight", "Every dataset source can be read."),
    Check("data-bad-rows", "preflight", "No row is malformed, unless datasets.bad_rows is skip."),
    Check(
        "code-needs-consent",
        "preflight",
        "Code a recipe names (reward functions, task code) runs only with --trust-code.",
    ),
    Check("evaluation-at-end", "preflight", "The evaluation at the end of the run can run (tasks, files, models)."),
]

CHECKS: dict[str, Check] = {c.id: c for c in (*_PLAN, *_PREFLIGHT)}
