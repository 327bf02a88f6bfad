"""What every importer shares: the source config, the recipe being built, and the report of every source key.

A translation reads each key of the source config once (`take`) and records what became of it: mapped to a recipe
field, mapped with a change of meaning, not needed (the recipe does that anyway), or dropped. Peers' defaults for
keys the source leaves out are recorded too (`default`), since they are the values the peer would have trained with.
Keys no importer rule read are dropped with that reason, so nothing leaves silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .report import CHANGED, DEFAULT, DROPPED, MAPPED, NOT_NEEDED, STATUSES, Row


class ImportRefused(Exception):
    """The source cannot become a recipe (a missing input, or a setting with no counterpart the run depends on)."""


@dataclass
class Options:
    """What the user told `recipe import` beyond the file."""

    hardware: Optional[str] = None
    gpus: Optional[int] = None
    nodes: Optional[int] = None
    dataset_info: Optional[Path] = None
    objective: Optional[str] = None  # trl: which trainer the config is for
    dataset_format: Optional[str] = None  # trl: the format of its Hub datasets
    name: str = "imported"
    recipe_dir: Path = Path(".")  # where the recipe is written (its paths are relative to it)


DEFAULT_PROFILE = "a100-80gb"
DAY_MINUTES = 24 * 60
# the peers' chat template names with a shipped counterpart (others: the tokenizer's own, or a .jinja file)
TEMPLATES = {"llama3": "llama3", "chatml": "chatml"}
# model.attention values besides `auto`: a peer's implementation of another name becomes `auto`
ATTENTION_IMPLEMENTATIONS = ("flash_attention_2", "sdpa", "eager")
# PEFT's target modules for Llama-family models when a LoRA config names none (query and value projections)
PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")
PEFT_DEFAULT_TARGETS_WHY = "PEFT's default for Llama-family models (query and value projections)"
# values that say the same as leaving a key out
EMPTY = (None, "", [], {})


@dataclass
class Translation:
    source: dict
    origin: Path  # the source config file
    options: Options
    tool: str
    recipe: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _read: set = field(default_factory=set)

    # --- reading the source ---------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self.source.get(key) is not None

    def take(self, key: str, default: Any = None) -> Any:
        """The source's value of `key` (marked as read), or `default` when absent or empty."""
        self._read.add(key)
        value = self.source.get(key)
        return default if value is None else value

    def first_of(self, *keys: str) -> tuple[str, Any]:
        """(name, value) of one setting the peer spells several ways (its current name first): the first name the
        source states, else (the current name, None). Other names also stated are reported not needed."""
        stated = [k for k in keys if self.has(k)]
        for key in keys:
            self._read.add(key)
        for other in stated[1:]:
            self.not_needed(other, f"another name of `{stated[0]}`, which is also set and is read")
        return (stated[0], self.source[stated[0]]) if stated else (keys[0], None)

    # --- writing the recipe ---------------------------------------------------------------------------------------
    def put(self, dotted: str, value: Any) -> None:
        node = self.recipe
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.recipe
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def row(self, key: str, status: str, fld: str, value: Any, note: str) -> None:
        self.rows.append(Row(key, status, fld, value, note))

    def mapped(self, key: str, fld: str, value: Any, note: str = "") -> None:
        self.put(fld, value)
        self.row(key, MAPPED, fld, value, note)

    def changed(self, key: str, fld: str, value: Any, why: str) -> None:
        if fld:
            self.put(fld, value)
        self.row(key, CHANGED, fld, value, why)

    def default(self, key: str, fld: str, value: Any, why: str) -> None:
        """A key the source leaves out: the peer's default, written explicitly."""
        self.put(fld, value)
        self.row(f"{key} (unset)", DEFAULT, fld, value, why)

    def given_or_default(self, key: str, fld: str, value: Any, why: str) -> None:
        """`value` mapped from the source when it states `key`, else recorded as the peer's default (`why`)."""
        if self.has(key):
            self.mapped(key, fld, value)
        else:
            self.default(key, fld, value, why)

    def defaulted(self, key: str, fld: str, default: Any, why: str) -> None:
        """The source's value of `key`, or the peer's `default` for it."""
        self.given_or_default(key, fld, self.take(key, default), why)

    def begin(self, model_key: str) -> None:
        """The recipe's head: version, name (the output file's), and the model the source names in `model_key`."""
        model = self.take(model_key)
        if not model:
            raise ImportRefused(f"{model_key} is missing: {self.tool} configs name the model to fine-tune there")
        self.put("version", 1)
        self.put("name", self.options.name)
        self.mapped(model_key, "model.name_or_path", self.model_path(model))
        if self.take("trust_remote_code"):
            self.mapped("trust_remote_code", "model.trust_remote_code", True, "honoured only with --trust-remote-code")

    def model_path(self, value: str) -> str:
        """A model or adapter name: a local folder (as the recipe writes it) or a Hub id."""
        local = self.local_path(value)
        return self.recipe_path(local) if local is not None else value

    def not_needed(self, key: str, why: str) -> None:
        self.row(key, NOT_NEEDED, "", self.source.get(key), why)

    def dropped(self, key: str, why: str, value: Any = None) -> None:
        self.row(key, DROPPED, "", self.source.get(key) if value is None else value, why)

    def evaluates(self) -> bool:
        """Whether the recipe being built has eval data (eval sources or a held-out fraction)."""
        return bool(self.get("datasets.eval") or self.get("datasets.eval_fraction"))

    def finish(self, handled_elsewhere: dict[str, str]) -> None:
        """Settle what the peers combine differently, then report every key nobody read: empty ones are not
        needed, the known-harmless ones say why, the rest are dropped."""
        optimizer = self.get("training.optimizer")
        if self.get("hardware.offload") in ("optimizer", "all") and optimizer not in (
            None,
            "adamw_torch",
            "adamw_torch_fused",
        ):
            self.row(
                f"(optimizer {optimizer} with offload)",
                CHANGED,
                "training.optimizer",
                "adamw_torch",
                "optimizer states offloaded to CPU are stepped by DeepSpeed's CPU AdamW (DeepSpeed refuses other "
                "optimizers with ZeRO-Offload)",
            )
            self.put("training.optimizer", "adamw_torch")
        self._report_unread(handled_elsewhere)

    def _report_unread(self, handled_elsewhere: dict[str, str]) -> None:
        """Report every key nobody read: empty ones are not needed, the known-harmless ones say why, the rest are
        dropped."""
        for key, value in self.source.items():
            reported = any(r.key == key or r.key.startswith((f"{key} ", f"{key}.", f"{key}:")) for r in self.rows)
            if reported:
                continue
            empty, off = value in EMPTY, value is False or value == 0
            if empty:
                self.row(key, NOT_NEEDED, "", value, "empty: the same as leaving it out")
            elif key in self._read and off:
                self.row(key, NOT_NEEDED, "", value, f"{value}: off, as when left out")
            elif key in self._read:
                self.row(key, DROPPED, "", value, "read but not carried into the recipe")
            elif key in handled_elsewhere:
                self.row(key, NOT_NEEDED, "", value, handled_elsewhere[key])
            else:
                self.row(key, DROPPED, "", value, f"no counterpart in a recipe: {self.tool}'s `{key}` is not read")

    @property
    def dropped_rows(self) -> list[Row]:
        return [r for r in self.rows if r.status == DROPPED]

    def counts(self) -> str:
        """`N mapped, N changed, N default, N not needed, N dropped`."""
        return ", ".join(f"{sum(r.status == s for r in self.rows)} {s}" for s in STATUSES)

    # --- shared rules ---------------------------------------------------------------------------------------------
    def local_path(self, value: str) -> Optional[Path]:
        """A path of the source config that exists: relative to the config's folder, then to the current
        directory."""
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return candidate if candidate.exists() else None
        for root in (self.origin.parent, Path.cwd()):
            if (root / candidate).exists():
                return (root / candidate).resolve()
        return None

    def recipe_path(self, path: Path) -> str:
        """`path` as the recipe should write it: relative to the recipe's folder."""
        return os.path.relpath(path, self.options.recipe_dir.resolve())

    def hardware(self) -> int:
        """The hardware section from the options (defaulted loudly); returns the world size."""
        o = self.options
        self.put("hardware.profile", o.hardware or DEFAULT_PROFILE)
        if not o.hardware:
            self.warnings.append(
                f"no --hardware given: planned for {DEFAULT_PROFILE}; pass --hardware PROFILE (see `recipe "
                "hardware`) for the machines this will run on"
            )
        if o.gpus is None:
            self.warnings.append(
                f"no --gpus given: {self.tool} takes the number of processes from its launcher, and the recipe needs "
                "it to make the global batch size; assumed 1 GPU per node"
            )
        self.put("hardware.gpus_per_node", o.gpus or 1)
        self.put("hardware.nodes", o.nodes or 1)
        return (o.gpus or 1) * (o.nodes or 1)

    def batch(self, micro_key: str, micro: int, accumulation_key: str, accumulation: int, world: int) -> None:
        """micro batch × accumulation × world size -> training.global_batch_size (and the micro batch as written)."""
        self.put("training.micro_batch_size", micro)
        self.row(micro_key, MAPPED, "training.micro_batch_size", micro, "")
        self.changed(
            accumulation_key,
            "training.global_batch_size",
            micro * accumulation * world,
            f"{micro} per process × {accumulation} accumulation steps × {world} process(es): the recipe states the "
            "global batch, and the plan derives the accumulation from it",
        )

    def timeout(self, key: str) -> None:
        """A distributed timeout in seconds -> hardware.distributed_timeout_minutes (at most a day)."""
        if not self.has(key):
            return
        seconds = self.take(key)
        minutes = max(1, round(seconds / 60))
        if minutes > DAY_MINUTES:
            why = f"{seconds} s (in effect never): capped at one day, so a hung process still ends the run"
            self.changed(key, "hardware.distributed_timeout_minutes", DAY_MINUTES, why)
        else:
            self.changed(key, "hardware.distributed_timeout_minutes", minutes, "seconds -> minutes")
