"""The recipe's YAML text, as `recipe import` writes it."""

from __future__ import annotations

from pathlib import Path

from .translation import Translation


def write_recipe(t: Translation, source_file: Path) -> str:
    """The recipe's YAML text: a header naming the source, then the sections in the reading order of a recipe."""
    import yaml

    from schemas.recipe import Recipe

    order = tuple(Recipe.model_fields)  # the schema's reading order
    body = {k: t.recipe[k] for k in order if k in t.recipe}
    body.update({k: v for k, v in t.recipe.items() if k not in body})
    header = [
        f"# Imported by `recipe import --from {t.tool}` from {source_file}.",
        f"# {len(t.rows)} source settings: {t.counts()}"
        + ("; see the import report for what was dropped and why." if t.dropped_rows else "."),
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110)
