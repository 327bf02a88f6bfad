"""What a finished run left behind, and loading it back: used by `recipe merge` and `recipe chat`.

A run's output directory holds either a PEFT adapter (`adapter_config.json`) or a whole model
(`config.json`), the tokenizer with its chat template, and `recipe.lock.yaml` (the resolved recipe).
An adapter is loaded through its base model: the lock names it (and how it was trained: dtype,
quantization); without a lock, `adapter_config.json`'s `base_model_name_or_path` does.
Reading the directory (`inspect`) imports nothing heavy; the `load_*` functions import torch lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from runner.common.models import load_model, load_tokenizer, remote_code_allowed, torch_dtype
from schemas import Recipe
from schemas.adapters import ADAPTERS
from schemas.yamlsource import safe_load

LOCK = "recipe.lock.yaml"
# PEFT's names (adapter_config.json's peft_type) of the prompt-learning adapters, and of those `recipe merge` folds in
PROMPT_LEARNING = {a.peft_type: a.label for a in ADAPTERS.values() if a.virtual_tokens}
MERGEABLE = {a.peft_type for a in ADAPTERS.values() if a.mergeable}  # DoRA is LoRA with use_dora
DTYPES = ("bfloat16", "float16", "float32")


class OutputError(Exception):
    """A trained output (or a model) that cannot be used as asked; the message says why and what to do."""


@dataclass
class Trained:
    """A run's output directory or a model, as far as merge and chat need to know it."""

    path: str  # the directory (or Hub id) named on the command line
    adapter: Optional[dict]  # adapter_config.json, when the path is an adapter
    recipe: Optional[Recipe]  # the lock file's resolved recipe, when there is one
    base: str  # the model the adapter applies to (the path itself for a whole model)
    lock_path: Optional[Path] = None

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def peft_type(self) -> Optional[str]:
        return self.adapter.get("peft_type") if self.adapter else None

    @property
    def adapter_label(self) -> str:
        if not self.adapter:
            return "full model"
        if self.peft_type == "LORA" and self.adapter.get("use_dora"):
            return "DoRA"
        return {"LORA": "LoRA", **PROMPT_LEARNING}.get(self.peft_type, self.peft_type or "adapter")

    @property
    def is_sequence_classifier(self) -> bool:
        if self.adapter:
            return self.adapter.get("task_type") == "SEQ_CLS"
        if self.recipe is not None:
            return self.recipe.objective.kind == "reward"
        config = Path(self.path) / "config.json"  # a model without a lock file: what its config declares
        declared = _read_json(config).get("architectures") or [] if config.is_file() else []
        return any(str(a).endswith("ForSequenceClassification") for a in declared)

    @property
    def trained_dtype(self) -> Optional[str]:
        """The recipe's model.dtype; without a lock file, the dtype the base model's config.json declares."""
        dtype = self.recipe.model.dtype if self.recipe else None
        config = Path(self.base) / "config.json"
        if dtype not in DTYPES and config.is_file():
            declared = _read_json(config)
            dtype = declared.get("dtype") or declared.get("torch_dtype")
        return dtype if dtype in DTYPES else None

    @property
    def quantization_method(self) -> Optional[str]:
        """`bnb-4bit` or `bnb-8bit` when the run trained on quantized weights."""
        return self.recipe.quantization.method if self.recipe and self.recipe.is_quantized else None

    @property
    def revision(self) -> Optional[str]:
        return self.recipe.model.revision if self.recipe else None

    def remote_code(self, flag: bool) -> bool:
        """Whether to run the model repository's code: the recipe asks for it and the command says so."""
        if self.recipe and self.recipe.model.trust_remote_code and not flag:
            raise OutputError(
                f"{self.lock_path}: model.trust_remote_code is true; pass --trust-remote-code to "
                f"run the model repository's code"
            )
        return bool(self.recipe and remote_code_allowed(self.recipe, flag))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: expected a JSON object")
    return data


def _find_lock(directory: Path) -> Optional[Path]:
    """The lock file of a run: in the directory, or in its parent for a `checkpoint-N` folder."""
    for candidate in (directory / LOCK, directory.parent / LOCK):
        if candidate.is_file():
            return candidate
    return None


def inspect(path: str, base: Optional[str] = None) -> Trained:
    """Read what `path` is. `base` replaces the base model named by the lock file or adapter config."""
    directory = Path(path)
    if not directory.exists():
        looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/")) and not directory.parent.is_dir()
        if base is None and looks_like_hub_id:
            return Trained(path=path, adapter=None, recipe=None, base=path)  # e.g. meta-llama/Meta-Llama-3-8B-Instruct
        raise OutputError(f"{path}: no such directory (give a run's output.dir, a model directory or a Hub model id)")
    if not directory.is_dir():
        raise OutputError(f"{path}: not a directory (give a run's output.dir or a model directory)")
    lock_path = _find_lock(directory)
    recipe = None
    if lock_path is not None:
        try:
            lock = safe_load(lock_path.read_text(encoding="utf-8"))
        except Exception as exc:  # a damaged file: say which, not a traceback
            raise OutputError(f"{lock_path}: cannot be read as YAML ({str(exc).splitlines()[0]})") from None
        data = lock.get("recipe") if isinstance(lock, dict) else None
        if not isinstance(data, dict) or "model" not in data:
            raise OutputError(f"{lock_path}: has no `recipe` section with a `model`; was it written by `recipe run`?")
        try:
            recipe = Recipe.model_validate(data)
        except ValueError as exc:
            raise OutputError(
                f"{lock_path}: its recipe does not validate with this version of recipe ({str(exc).splitlines()[0]})"
            ) from None
    adapter_file = directory / "adapter_config.json"
    if adapter_file.is_file():
        adapter = _read_json(adapter_file)
        named = recipe.model.name_or_path if recipe else adapter.get("base_model_name_or_path")
        if not (base or named):
            raise OutputError(f"{adapter_file}: names no base model (base_model_name_or_path); pass --base MODEL")
        return Trained(str(directory), adapter, recipe, base or named, lock_path)
    if (directory / "config.json").is_file():
        if base is not None:
            raise OutputError(
                f"{path}: holds a whole model, not an adapter; --base applies to adapter directories only"
            )
        return Trained(str(directory), None, recipe, str(directory), lock_path)
    checkpoints = sorted(
        directory.glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    if checkpoints:
        raise OutputError(
            f"{path}: the run has checkpoints but no final adapter or model (did it finish?); "
            f"name a checkpoint directory instead, e.g. {checkpoints[-1]}"
        )
    raise OutputError(
        f"{path}: neither adapter_config.json nor config.json is here; give a run's output.dir or a model directory"
    )


def _load_failure(trained: Trained, exc: Exception) -> OutputError:
    """Say where the base model name came from: a relative path is relative to where training started."""
    if trained.base == trained.path and not Path(trained.path).exists():
        return OutputError(
            f"{trained.path}: not a local directory, and loading it as a Hub model id failed: "
            f"{str(exc).splitlines()[0]}"
        )
    source = trained.lock_path or (Path(trained.path) / "adapter_config.json" if trained.is_adapter else None)
    where = f"{source}: " if source else ""
    if not Path(trained.base).is_dir():
        return OutputError(
            f"{where}model {trained.base!r} is not a directory from here ({Path.cwd()}) and could not be loaded as a "
            f"Hub id ({str(exc).splitlines()[0]}); run this command from the directory the training started in, "
            "or pass --base PATH_OR_HUB_ID"
        )
    return OutputError(f"{where}model {trained.base!r} cannot be loaded: {exc}")


def load_trained_tokenizer(trained: Trained, trust_remote_code: bool = False):
    """The run's own tokenizer (saved with its chat template), else the base model's with the recipe's template."""
    own = Path(trained.path)
    source = trained.path if (own / "tokenizer_config.json").is_file() or not trained.is_adapter else trained.base
    from_base = source != trained.path
    try:
        return load_tokenizer(
            source,
            revision=trained.revision if from_base else None,
            trust_remote_code=trust_remote_code,
            # the template training used with this base tokenizer; a saved tokenizer already holds it
            chat_template=trained.recipe.model.chat_template if from_base and trained.recipe else None,
            keep_template=not (from_base and trained.recipe),
            special_tokens=trained.recipe.model.special_tokens if from_base and trained.recipe else None,
        )
    except (OSError, ValueError) as exc:
        raise _load_failure(trained, exc) from None


def bnb_spec(trained: Trained, dtype: str) -> dict:
    """The BitsAndBytesConfig spec the run trained with (from the lock's quantization section)."""
    from runner.plan.arguments import quantization_args
    from runner.plan.precision import quant_storage

    r, compute = trained.recipe, trained.recipe.quantization.compute_dtype
    return quantization_args(r, compute if compute in DTYPES else dtype, quant_storage(r, None, dtype))


def load_trained_model(
    trained: Trained,
    dtype: str,
    *,
    quantized: bool = False,
    dequantize: bool = False,
    trust_remote_code: bool = False,
    device: str = "cpu",
    vocabulary: int | None = None,
) -> Any:
    """The base model, with the adapter applied when there is one.

    `vocabulary`: the run's tokenizer length; a base with fewer embedding rows (the run added special tokens) is
    grown to it before the adapter, which holds the trained new rows, is applied.

    `quantized`: the base is quantized as the run trained it. `dequantize`: quantized, then turned back into
    plain `dtype` weights (the rounded values the adapter was trained on top of).
    """
    on_bits = quantized or dequantize
    try:
        model = load_model(
            trained.base,
            dtype=dtype,
            sequence_classifier=trained.is_sequence_classifier,
            revision=trained.revision if trained.is_adapter else None,
            trust_remote_code=trust_remote_code,
            quantization=bnb_spec(trained, dtype) if on_bits else None,
            device_map={"": device} if on_bits else None,
        )
    except (OSError, ValueError) as exc:
        raise _load_failure(trained, exc) from None
    if dequantize:
        model = model.dequantize(dtype=torch_dtype(dtype))
    if trained.is_adapter and vocabulary and vocabulary > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocabulary, mean_resizing=False)
    if not quantized:
        model.to(device)
    if trained.is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, trained.path, is_trainable=False)
    model.eval()
    return model


def prepare_runtime(device: Optional[str]) -> str:
    """Quiet the libraries and return the device to use (`device`, else CUDA when available, else CPU).

    Keeps the terminal for what the command says: no load progress bars or library deprecation notes,
    and DeepSpeed (imported by the libraries, unused here) does not announce on stdout that it found no GPU.
    """
    import os
    import warnings

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def bitsandbytes_installed() -> bool:
    from runner.plan.probe import probe_packages

    return probe_packages().get("bitsandbytes") is not None


def open_model(
    path: str,
    *,
    base: Optional[str] = None,
    trust_remote_code: bool = False,
    device: Optional[str] = None,
    log: Callable[[str], None],
) -> tuple[Any, Any, Trained]:
    """Load a run's output (adapter through its base, as trained) or a model, for generation."""
    trained = inspect(path, base)
    model, tokenizer = open_trained(trained, trust_remote_code=trust_remote_code, device=device, log=log)
    return model, tokenizer, trained


def open_trained(
    trained: Trained, *, trust_remote_code: bool = False, device: Optional[str] = None, log: Callable[[str], None]
) -> tuple[Any, Any]:
    """(model, tokenizer) of a generating output: the adapter through its base loaded as the run trained it (the
    dtype; quantized when bitsandbytes is installed), the run's tokenizer with its chat template."""
    if trained.is_sequence_classifier:
        raise OutputError(
            f"{trained.path}: is a reward model (a sequence classifier): it scores a conversation and does not "
            "generate text"
        )
    trust = trained.remote_code(trust_remote_code)
    device = prepare_runtime(device)
    dtype = trained.trained_dtype or "auto"
    if device == "cpu" and dtype in ("float16", "auto"):
        dtype = "float32"  # half-precision matmuls on the CPU are slow or missing
    method = trained.quantization_method if trained.is_adapter else None
    quantized = method is not None and bitsandbytes_installed()
    if method is not None and not quantized:
        log(f"bitsandbytes is not installed: loading the base of this {method} run unquantized")
    what = f"{trained.adapter_label} adapter {trained.path} on {trained.base}" if trained.is_adapter else trained.path
    log(f"loading {what} ({'4-bit ' if quantized and method == 'bnb-4bit' else ''}{dtype}, {device}) ...")
    tokenizer = load_trained_tokenizer(trained, trust)
    model = load_trained_model(
        trained, dtype, quantized=quantized, trust_remote_code=trust, device=device, vocabulary=len(tokenizer)
    )
    return model, tokenizer


def load_reward_model(source: str, dtype: str, trust_remote_code: bool, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of a reward model: a run's output directory (its adapter merged into its base) with the
    tokenizer and chat template that run trained with; for a Hub id, (the id, None): TRL loads it itself."""
    if not Path(source).is_dir():
        return source, None
    trained = inspect(source)
    tokenizer = load_trained_tokenizer(trained, trust_remote_code)
    model = load_trained_model(
        trained, dtype, trust_remote_code=trust_remote_code, vocabulary=len(tokenizer), device=device
    )
    if trained.is_adapter:
        model = model.merge_and_unload()  # TRL scores with a plain transformers model
    return model, tokenizer
