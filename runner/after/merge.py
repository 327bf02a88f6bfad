"""`recipe merge OUTPUT_DIR`: fold a LoRA/DoRA/IA3 adapter into its base model and save a standalone model.

The base is loaded unquantized in the chosen dtype (a QLoRA run's 4-bit base too), the adapter applied,
and the logits of the adapter model are recorded on a few probe inputs. After `merge_and_unload`, the
merged model must give the same logits within a tolerance set by the dtype; if it does not, nothing is
written. For a run that trained on quantized weights, the merged model is also compared with the
model as it was trained (quantized base + adapter), and the gap is reported: merging into the original
weights removes the quantization error the adapter was trained on top of.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from runner.common.cards import model_card
from runner.common.files import replace_dir_atomic
from runner.common.rundir import record_created
from runner.common.trained import (
    DTYPES,
    MERGEABLE,
    PROMPT_LEARNING,
    OutputError,
    Trained,
    bitsandbytes_installed,
    inspect,
)

# Relative RMS difference of the logits (merged vs. adapter) that a correct merge stays under.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
PROBES = (
    [{"role": "user", "content": "What color is the sky on a clear day?"}],
    [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Name a fruit and its color."},
    ],
)
PLAIN_PROBE = "The quick brown fox jumps over the lazy dog. Once upon a time"


@dataclass
class Agreement:
    """How closely two models' logits agree on the probes."""

    relative_error: float  # ||a - b|| / ||b|| over all probe logits
    max_abs_diff: float
    top1_agreement: Optional[
        float
    ]  # fraction of positions whose most likely token is the same (None: one output, a reward score)

    def line(self) -> str:
        text = f"relative error {self.relative_error:.2e}, max |Δlogit| {self.max_abs_diff:.2e}"
        return (
            text if self.top1_agreement is None else f"{text}, same top token at {self.top1_agreement:.0%} of positions"
        )


@dataclass
class MergeReport:
    source: str
    base: str
    adapter: str
    dtype: str
    target: str
    tolerance: float
    probes: int
    check: Agreement
    against_quantized: Optional[Agreement] = None
    dequantized: bool = False  # merged into the quantized base's dequantized weights (--dequantize)
    notes: list[str] = field(default_factory=list)


def refuse_unmergeable(trained: Trained) -> None:
    where = Path(trained.path) / "adapter_config.json"
    if not trained.is_adapter:
        raise OutputError(
            f"{trained.path}: holds a whole model (a full fine-tune or an already merged model); "
            f"there is no adapter to merge"
        )
    if trained.peft_type in PROMPT_LEARNING:
        raise OutputError(
            f"{where}: peft_type {trained.peft_type}: a {PROMPT_LEARNING[trained.peft_type]} "
            f"adapter cannot be merged: it "
            "adds learned virtual tokens to every input instead of changing weights, so there is nothing to fold into "
            f"the base model. Use it as an adapter: `recipe chat {trained.path}` or PeftModel.from_pretrained(base, "
            f"{trained.path!r})"
        )
    if trained.peft_type not in MERGEABLE:
        raise OutputError(
            f"{where}: peft_type {trained.peft_type} cannot be merged by `recipe merge` (LoRA, DoRA and IA3 can)"
        )


def probe_inputs(tokenizer) -> list[Any]:
    """Token ids of a few chat-formatted probes (plain text when there is no chat template)."""
    texts = [PLAIN_PROBE]
    if getattr(tokenizer, "chat_template", None):
        texts += [tokenizer.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True) for m in PROBES]
    return [tokenizer(t, return_tensors="pt", add_special_tokens=False)["input_ids"] for t in texts]


def probe_logits(model, inputs: list[Any]) -> list[Any]:
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return [model(input_ids=ids.to(device)).logits.float().cpu() for ids in inputs]


def compare(got: list[Any], reference: list[Any]) -> Agreement:
    import torch

    a, b = torch.cat([x.flatten(0, -2) for x in got]), torch.cat([x.flatten(0, -2) for x in reference])
    same = (a.argmax(-1) == b.argmax(-1)).float().mean().item() if a.shape[-1] > 1 else None
    return Agreement(
        relative_error=((a - b).norm() / b.norm().clamp_min(1e-12)).item(),
        max_abs_diff=(a - b).abs().max().item(),
        top1_agreement=same,
    )


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_target(trained: Trained, target: Path, overwrite: bool) -> None:
    if target.resolve() == Path(trained.path).resolve():
        raise OutputError(
            f"--to {target}: is the adapter directory itself; choose another directory (default: {trained.path}/merged)"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise OutputError(
            f"--to {target}: already exists and is not empty; choose another --to, or pass --overwrite to replace it"
        )


def merge_card(report: MergeReport, trained: Trained) -> str:
    check = [
        f"Adapter model vs. merged model on {report.probes} probe inputs: {report.check.line()} "
        f"(tolerance: relative error {report.tolerance:g}).",
    ]
    if report.against_quantized:
        check += ["", f"Against the quantized model as trained: {report.against_quantized.line()}."]
    for note in report.notes:
        check += ["", note]
    footer = None
    if trained.lock_path is not None:
        footer = "The run's recipe and library versions are in `recipe.lock.yaml` beside these weights."
    return model_card(
        f"{Path(report.source).name} (merged)",
        [f"`{report.source}` ({report.adapter}) merged into `{report.base}` in {report.dtype} by `recipe merge`."],
        [("Check", check)],
        footer,
    )


def _settings(trained: Trained, dtype: Optional[str], tolerance: Optional[float], dequantize: bool):
    """The merge's dtype, tolerance and the run's quantization method; raises OutputError for what cannot be done."""
    dtype = dtype or trained.trained_dtype or "bfloat16"
    if dtype not in DTYPES:
        raise OutputError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
    method = trained.quantization_method
    if dequantize and method is None:
        raise OutputError(
            f"--dequantize: {trained.path} did not train on quantized weights; merge without --dequantize"
        )
    if dequantize and not bitsandbytes_installed():
        raise OutputError("--dequantize: needs bitsandbytes to load the quantized base (pip install bitsandbytes)")
    return dtype, tolerance, method


def _as_trained(
    trained: Trained, method: str, dtype: str, dequantize: bool, inputs: list[Any], load_with_adapter, log
) -> tuple[Optional[list[Any]], list[str]]:
    """For a run that trained on quantized weights: the probe logits of the model as trained (quantized base +
    adapter, when bitsandbytes is installed) and the notes that say what the merge folds the adapter into."""
    notes: list[str] = []
    as_trained = None
    if not bitsandbytes_installed():
        notes.append(
            "bitsandbytes is not installed: the merged model was not compared with the quantized model as trained."
        )
    else:
        log(f"loading the {method} base with the adapter, as trained, for comparison ...")
        quantized = load_with_adapter(quantized=True)
        as_trained = probe_logits(quantized, inputs)
        del quantized
        _free_memory()
    if dequantize:
        notes.append(
            f"The run trained on {method} weights; the adapter is merged into those weights, "
            f"dequantized to {dtype} (--dequantize), so the merged model computes what the model as trained did."
        )
    else:
        notes.append(
            f"The run trained on {method} weights; the adapter is merged into the original "
            f"{dtype} weights of the base model (the base is reloaded unquantized; --dequantize merges into "
            "the quantized weights instead)."
        )
    return as_trained, notes


def _save(target: Path, merged, tokenizer, trained: Trained, report: MergeReport) -> None:
    """The merged model, its tokenizer, the run's lock file, merge.json and a model card, written to `target` whole."""

    def fill(tmp: Path) -> None:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if trained.lock_path is not None:
            shutil.copyfile(trained.lock_path, tmp / "recipe.lock.yaml")
        (tmp / "merge.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(merge_card(report, trained), encoding="utf-8")

    record_created(target.parent, target.name)  # a merge into a run's directory is the run's to remove
    replace_dir_atomic(target, fill)


def merge(
    path: str,
    *,
    to: Optional[str] = None,
    dtype: Optional[str] = None,
    base: Optional[str] = None,
    overwrite: bool = False,
    dequantize: bool = False,
    tolerance: Optional[float] = None,
    trust_remote_code: bool = False,
    device: Optional[str] = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> MergeReport:
    """Merge the adapter in `path` and save the result; raises OutputError (writing nothing) when it cannot."""
    trained = inspect(path, base)
    refuse_unmergeable(trained)
    trust = trained.remote_code(trust_remote_code)
    dtype, tolerance, method = _settings(trained, dtype, tolerance, dequantize)
    target = Path(to) if to else Path(trained.path) / "merged"
    _check_target(trained, target, overwrite)

    from runner.common.trained import load_trained_model, load_trained_tokenizer, prepare_runtime

    device = prepare_runtime(device)
    tokenizer = load_trained_tokenizer(trained, trust)
    inputs = probe_inputs(tokenizer)

    def load_with_adapter(**how):
        return load_trained_model(
            trained, dtype, trust_remote_code=trust, device=device, vocabulary=len(tokenizer), **how
        )

    notes: list[str] = []
    as_trained = None
    if method is not None:
        as_trained, notes = _as_trained(trained, method, dtype, dequantize, inputs, load_with_adapter, log)
    how = f"the dequantized {method} base" if dequantize else f"{trained.base} in {dtype}"
    log(f"loading {how} with the adapter from {trained.path} ...")
    model = load_with_adapter(dequantize=dequantize)
    reference = probe_logits(model, inputs)
    merged = model.merge_and_unload(safe_merge=True)
    merged_logits = probe_logits(merged, inputs)
    check = compare(merged_logits, reference)
    report = MergeReport(
        source=trained.path,
        base=trained.base,
        adapter=trained.adapter_label,
        dtype=dtype,
        target=str(target),
        tolerance=tolerance,
        probes=len(inputs),
        check=check,
        against_quantized=compare(merged_logits, as_trained) if as_trained is not None else None,
        dequantized=dequantize,
        notes=notes,
    )
    if not check.relative_error <= tolerance:
        raise OutputError(
            f"{trained.path}: the merged model does not reproduce the adapter model: {check.line()}, above the "
            f"tolerance {tolerance:g} for {dtype}; nothing was written. Merging in float32 (--dtype "
            f"float32) rules out rounding."
        )
    merged.config.dtype = dtype
    _save(target, merged, tokenizer, trained, report)
    return report
