"""The `datasets` section: sources, format presets and column mappings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .base import Section
from .diagnostics import did_you_mean
from .localpath import SourcePath


@dataclass(frozen=True)
class Format:
    """A dataset format preset: the columns it reads and the kind of rows it produces."""

    columns: tuple[str, ...]  # canonical columns the preset reads (all required unless listed in optional)
    family: str  # conversation | text | prompt-completion | preference | unpaired-preference | prompt-only
    optional: tuple[str, ...] = ()
    summary: str = ""


FORMATS: dict[str, Format] = {
    "messages": Format(("messages",), "conversation", summary="`messages`: a list of `{role, content}` turns."),
    "text": Format(("text",), "text", summary="`text`: raw text."),
    "prompt-completion": Format(
        ("prompt", "completion"), "prompt-completion", summary="`prompt` and `completion` (strings or message lists)."
    ),
    "preference": Format(
        ("prompt", "chosen", "rejected"),
        "preference",
        optional=("prompt",),
        summary="`chosen` and `rejected` (strings or message lists), with an optional shared `prompt`.",
    ),
    "unpaired-preference": Format(
        ("prompt", "completion", "label"),
        "unpaired-preference",
        summary="`prompt`, `completion` and a boolean `label` (true = desirable), as KTO reads them.",
    ),
    "prompt-only": Format(("prompt",), "prompt-only", summary="`prompt` only (for online RL)."),
    "hh-rlhf": Format(
        ("chosen", "rejected"),
        "preference",
        summary="Anthropic HH-RLHF: `chosen` and `rejected` dialogues with "
        "`\\n\\nHuman:`/`\\n\\nAssistant:` turns sharing a prefix.",
    ),
    "ultrafeedback": Format(
        ("prompt", "chosen", "rejected"),
        "preference",
        summary="UltraFeedback binarized: `prompt` and `chosen`/`rejected` message lists.",
    ),
    "ultrachat": Format(("messages",), "conversation", summary="UltraChat 200k: a `messages` list of turns."),
    "sharegpt": Format(
        ("conversations",), "conversation", summary="ShareGPT: `conversations` of `{from, value}` with human/gpt roles."
    ),
    "alpaca": Format(
        ("instruction", "input", "output"),
        "prompt-completion",
        optional=("input",),
        summary="Alpaca: `instruction`, optional `input`, `output`.",
    ),
    "alpaca-preference": Format(
        ("instruction", "input", "chosen", "rejected"),
        "preference",
        optional=("input",),
        summary="Alpaca pairs (LLaMA-Factory's ranking Alpaca): `instruction`, optional `input`, `chosen` and "
        "`rejected` answers.",
    ),
    "sharegpt-preference": Format(
        ("conversations", "chosen", "rejected"),
        "preference",
        summary="ShareGPT pairs (LLaMA-Factory's ranking ShareGPT): `conversations` of `{from, value}` prompt turns, "
        "and `chosen` and `rejected` answers, each one `{from, value}` turn (or a string).",
    ),
    "triviaqa": Format(
        ("question", "answer"),
        "prompt-completion",
        summary="TriviaQA: `question` and an `answer` record whose `value` is the answer.",
    ),
    "lima": Format(
        ("conversations",),
        "conversation",
        summary="LIMA: `conversations`, a list of strings alternating user and assistant.",
    ),
}

SOURCE_KINDS = ("hf", "jsonl", "json", "csv", "parquet", "text", "local")
_SOURCE = re.compile(r"^(?P<kind>[a-z]+):(?P<rest>.+)$")
SUFFIX_TO_KIND = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def split_source(source: str) -> tuple[str, str, Optional[str]]:
    """`hf:ID[:CONFIG]` -> ("hf", ID, CONFIG); `jsonl:PATH` -> ("jsonl", PATH, None)."""
    m = _SOURCE.match(source)
    assert m, source
    kind, rest = m["kind"], m["rest"]
    if kind == "hf" and ":" in rest:
        ident, config = rest.split(":", 1)
        return kind, ident, config
    return kind, rest, None


class DatasetSource(Section):
    """One dataset: where it is, how to read it, and its share of a mixture."""

    source: SourcePath = Field(
        description="`hf:ID[:CONFIG]` (Hub dataset), `jsonl:PATH`, `json:PATH`, `csv:PATH`, `parquet:PATH`, "
        "`text:PATH` (one example per line) or `local:PATH` (a `save_to_disk` folder). Paths are relative to the "
        "recipe file that names them (`--set` values: to the current directory)."
    )
    split: str = Field(
        "train", min_length=1, description="Split to read, e.g. `train`, `test` or a slice like `train[:10%]`."
    )
    format: Literal[tuple(FORMATS)] = Field(
        description="Format preset that turns rows into what the objective's trainer reads."
    )  # type: ignore[valid-type]
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename the file's columns to the preset's canonical ones: `{canonical: column_in_file}`, "
        "e.g. `{prompt: question, chosen: good, rejected: bad}`.",
    )
    weight: Optional[float] = Field(
        None, gt=0, description="Mixture weight: this source's share of the mixture, relative to the others' weights."
    )
    samples: Optional[int] = Field(
        None, gt=0, description="Mixture by count: take exactly this many rows from this source (repeating if needed)."
    )
    limit: Optional[int] = Field(
        None, gt=0, description="Read at most this many rows from the source (the first ones)."
    )

    @field_validator("source")
    @classmethod
    def _source_syntax(cls, value: str) -> str:
        m = _SOURCE.match(value)
        if m and m["kind"] in SOURCE_KINDS:
            if m["kind"] == "hf" and not re.match(r"^[\w.-]+(/[\w.-]+)?(:[\w.-]+)?$", m["rest"]):
                raise ValueError(f"'{value}' is not `hf:ORG/NAME` or `hf:ORG/NAME:CONFIG`")
            return value
        if m:
            raise ValueError(
                f"unknown source kind '{m['kind']}:'.{did_you_mean(m['kind'], SOURCE_KINDS)} "
                f"Use one of: {', '.join(k + ':' for k in SOURCE_KINDS)}"
            )
        suffix = next((s for s in SUFFIX_TO_KIND if value.endswith(s)), None)
        hint = (
            f"Did you mean '{SUFFIX_TO_KIND[suffix]}:{value}'?" if suffix else f"For a Hub dataset write 'hf:{value}'."
        )
        raise ValueError(f"'{value}' has no source kind prefix. {hint}")

    @model_validator(mode="after")
    def _one_mixture_kind(self) -> "DatasetSource":
        if self.weight is not None and self.samples is not None:
            raise ValueError("give `weight` or `samples`, not both")
        return self

    @property
    def spec(self) -> Format:
        return FORMATS[self.format]


class Datasets(Section):
    """Training data, and evaluation data or the fraction of training data held out for it."""

    train: list[DatasetSource] = Field(min_length=1, description="Training sources; several form a mixture.")
    eval: list[DatasetSource] = Field(default_factory=list, description="Evaluation sources.")
    eval_fraction: Optional[float] = Field(
        None,
        gt=0,
        lt=1,
        description="Hold out this fraction of the training rows for evaluation (when `eval` is empty).",
    )
    bad_rows: Literal["refuse", "skip"] = Field(
        "refuse",
        description="A row that cannot be trained on (malformed, a field missing or empty, chosen identical to "
        "rejected, turns out of order, ...): `refuse` stops the run before launch, naming each (`recipe data "
        "--check` lists them); `skip` trains without them and records how many were skipped, and why, in "
        "`output.dir/data-check.json`. A missing value is never filled in.",
    )
    duplicates: Literal["keep", "drop"] = Field(
        "keep",
        description="Rows that repeat an earlier row of the same split exactly (after formatting): counted and "
        "kept, or dropped (the first copy stays).",
    )
    num_proc: Optional[int] = Field(
        None,
        ge=1,
        le=256,
        description="Processes that format and tokenize the data (Axolotl's `dataset_processes`, LLaMA-Factory's "
        "`preprocessing_num_workers`, TRL's `dataset_num_proc`); omit for one. Speeds up large datasets; the rows "
        "and their order are the same.",
    )
    max_row_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        description="A row (a line of a jsonl, csv or text file, an element of a json array) larger than this is a "
        "bad row: usually a broken file, not one example.",
    )
