"""The JSON Schema of a recipe, for editors (yaml-language-server) and other tools."""

from __future__ import annotations

import json
from pathlib import Path

from .hardware import profile_names
from .recipe import Recipe

SCHEMA_FILE = Path(__file__).parent / "recipe.schema.json"


def recipe_json_schema() -> dict:
    schema = Recipe.model_json_schema()
    hardware = schema["$defs"]["Hardware"]["properties"]["profile"]
    hardware["examples"] = list(profile_names())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "recipe.schema.json",
        **schema,
    }


def recipe_json_schema_text() -> str:
    return json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False) + "\n"
