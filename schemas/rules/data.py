"""Data rules: column mappings, mixtures and where the eval data comes from."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import did_you_mean
from ..recipe import Recipe
from .core import Finding, dataset_entries, rule


@rule("dataset-columns", "`columns` maps a format's canonical column names to the file's names.")
def dataset_columns(r: Recipe) -> Iterable[Finding]:
    for path, entry in dataset_entries(r):
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
def mixture_weight_vs_samples(r: Recipe) -> Iterable[Finding]:
    for split in ("train", "eval"):
        entries = getattr(r.datasets, split)
        weighted = [i for i, e in enumerate(entries) if e.weight is not None]
        counted = [i for i, e in enumerate(entries) if e.samples is not None]
        if weighted and counted:
            yield (
                ("datasets", split, counted[0], "samples"),
                "this mixture mixes `weight` and `samples`; use one of them on every source",
            )


@rule("eval-data-twice", "Give eval datasets or eval_fraction, not both.")
def eval_data_twice(r: Recipe) -> Iterable[Finding]:
    if r.datasets.eval and r.datasets.eval_fraction is not None:
        yield ("datasets", "eval_fraction"), "`datasets.eval` is given, so `eval_fraction` would be ignored; keep one"
