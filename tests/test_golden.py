"""Every shipped recipe's plan is snapshot-tested: a change in resolution shows up in review."""

from __future__ import annotations

import pytest

from golden_plans import GOLDEN, golden_name, plan_json, shipped_recipes

RECIPES = shipped_recipes()


def test_every_recipe_has_a_snapshot_and_no_stale_ones():
    assert RECIPES
    assert {golden_name(p) for p in RECIPES} == {p.name for p in GOLDEN.glob("*.json")}, (
        "run: python tests/golden_plans.py"
    )


@pytest.mark.parametrize("path", RECIPES, ids=[golden_name(p) for p in RECIPES])
def test_plan_matches_snapshot(path):
    golden = GOLDEN / golden_name(path)
    assert golden.exists(), "run: python tests/golden_plans.py"
    assert plan_json(path) == golden.read_text(), (
        f"the plan of {path.name} changed; if intended, run `python tests/golden_plans.py` and review the diff"
    )
