"""The fields the loader anchors to the recipe file are those whose type is marked `LocalPath`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from schemas import Recipe
from schemas.anchoring import anchor_paths, path_fields
from schemas.localpath import HubOrPath
from schemas.sections import Model
from schemas.yamlsource import Sources

# The nine path fields (model.name_or_path, tokenizer and chat_template, the adapter's start_from, the
# objective's reward_model and reward_functions, a dataset's source, an evaluation task's task and reward_model),
# at every place the recipe holds them: a dataset source is in datasets.train, datasets.eval and a task's data.
ANCHORED = {
    ("model", "name_or_path"),
    ("model", "tokenizer"),
    ("model", "chat_template"),
    ("adapter", "start_from"),
    ("objective", "reward_model"),
    ("objective", "reward_functions", "*"),
    ("datasets", "train", "*", "source"),
    ("datasets", "eval", "*", "source"),
    ("evaluation", "tasks", "*", "task"),
    ("evaluation", "tasks", "*", "data", "source"),
    ("evaluation", "tasks", "*", "reward_model"),
}


def test_the_anchored_fields_are_the_nine_path_fields():
    assert set(path_fields(Recipe)) == ANCHORED
    fields = {p[-2] if p[-1] == "*" else p[-1] for p in ANCHORED}
    assert fields == {
        "name_or_path",
        "tokenizer",
        "chat_template",
        "start_from",
        "reward_model",
        "reward_functions",
        "source",
        "task",
    }


class ModelWithWeights(Model):
    weights_file: Optional[HubOrPath] = Field(None, description="A new path field.")


class RecipeWithWeights(Recipe):
    model: ModelWithWeights = Field(description="The base model.")


def test_a_new_path_marked_field_is_anchored(tmp_path: Path):
    assert set(path_fields(RecipeWithWeights)) == ANCHORED | {("model", "weights_file")}
    data = {"model": {"name_or_path": "org/model", "weights_file": "./weights/extra.bin"}}
    anchor_paths(data, Sources(), tmp_path / "recipe.yaml", RecipeWithWeights)
    assert data["model"] == {
        "name_or_path": "org/model",  # a Hub id stays one
        "weights_file": str((tmp_path / "weights/extra.bin").resolve()),
    }
