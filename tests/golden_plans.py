"""Golden plan snapshots: the plan JSON of every shipped recipe, checked by tests/test_golden.py.

After a deliberate change to resolution, regenerate and review the diff:

    python tests/golden_plans.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
# Plans are snapshotted with nothing optional installed, so they do not depend on the machine.
PROBE: dict = {}


def shipped_recipes() -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from runner.cli import find_recipes

    return find_recipes([str(ROOT / "recipes")])


def golden_name(path: Path) -> str:
    return str(path.relative_to(ROOT / "recipes")).replace("/", "__").rsplit(".", 1)[0] + ".json"


def plan_json(path: Path) -> str:
    from runner.plan import resolve
    from schemas import load

    loaded = load(path)
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    text = json.dumps(resolve(loaded.recipe, PROBE).to_json(), indent=2, sort_keys=True) + "\n"
    return text.replace(str(ROOT), "<repository>")  # local paths are absolute (resolved against the recipe file)


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    wanted = set()
    for path in shipped_recipes():
        name = golden_name(path)
        wanted.add(name)
        (GOLDEN / name).write_text(plan_json(path))
        print(f"wrote tests/golden/{name}")
    for stale in GOLDEN.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed tests/golden/{stale.name}")


if __name__ == "__main__":
    main()
