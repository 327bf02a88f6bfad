"""The layout's promises: imports point down, the training entry point is a leaf, one typed plan hand-off,
and each objective's facts in one table that covers every objective kind."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import pytest

from runner.plan import resolve
from runner.plan.types import PLAN_VERSION, Plan, PlanFormatError
from schemas import Recipe, load
from schemas.objectives import OBJECTIVES, Objective

from conftest import ROOT
from golden_plans import shipped_recipes

PACKAGES = ("runner", "schemas")


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_nothing_imports_the_training_entry_point():
    importers = [
        str(p.relative_to(ROOT)) for pkg in PACKAGES for p in sources(pkg) if "runner.run.train" in imports_of(p)
    ]
    importers += [str(p.relative_to(ROOT)) for p in sources("tests") if "runner.run.train" in imports_of(p)]
    assert importers == [] and (ROOT / "runner/run/train.py").is_file()


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("schemas", ("runner", "torch", "transformers", "trl", "peft", "datasets")),
        (
            "runner/plan",
            ("torch", "transformers", "trl", "peft", "datasets", "deepspeed", "runner.run", "runner.after"),
        ),
        ("runner/common", ("runner.run", "runner.after", "runner.cli", "runner.data")),
        ("runner/data", ("runner.run", "runner.after", "runner.cli")),
        ("runner/run", ("runner.after", "runner.cli")),
        ("runner/after", ("runner.run", "runner.cli")),
        ("runner/measure", ("runner.run", "runner.after", "runner.cli", "runner.data")),
        (
            "runner/migrate",
            ("torch", "transformers", "trl", "peft", "datasets", "runner.run", "runner.after", "runner.cli"),
        ),
    ],
)
def test_imports_point_down(package, forbidden):
    bad = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in sources(package)
        for name in imports_of(p)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert bad == []


def test_one_implementation_of_loading_a_model_and_a_tokenizer():
    callers = {
        str(p.relative_to(ROOT))
        for p in sources("runner")
        if "from_pretrained" in p.read_text(encoding="utf-8") and "PeftModel" not in p.read_text(encoding="utf-8")
    }
    assert callers == {"runner/common/models.py"}


@pytest.mark.parametrize("path", shipped_recipes(), ids=lambda p: p.stem)
def test_the_plan_hand_off_round_trips(path):
    plan = resolve(load(path).recipe, {})
    written = json.loads(json.dumps(plan.to_json()))
    read = Plan.from_json(written)
    assert read.to_json() == plan.to_json()
    assert read.recipe == Recipe.model_validate(plan.resolved)  # the recipe with every `auto` decided
    assert (read.zero, read.dtype, read.precision, read.micro_batch_size, read.gradient_checkpointing) == (
        plan.zero,
        plan.dtype,
        plan.precision,
        plan.micro_batch_size,
        plan.gradient_checkpointing,
    )


def test_a_plan_of_another_version_is_refused():
    plan = resolve(load(ROOT / "recipes/tiny/sft-lora.yaml").recipe, {}).to_json()
    with pytest.raises(PlanFormatError, match=f"plan version 1 .* reads {PLAN_VERSION}"):
        Plan.from_json({**plan, "version": 1})
    with pytest.raises(PlanFormatError, match="no `version`"):
        Plan.from_json({k: v for k, v in plan.items() if k != "version"})


def _sections(union) -> dict:
    """kind -> section class of a union discriminated by `kind` (Objective, Adapter)."""
    (members,) = [a for a in typing.get_args(union) if typing.get_origin(a) is typing.Union]
    return {typing.get_args(c.model_fields["kind"].annotation)[0]: c for c in typing.get_args(members)}


def test_every_objective_kind_has_its_facts_and_they_name_real_classes():
    assert sorted(OBJECTIVES) == sorted(_sections(Objective))
    from runner.common.models import import_dotted
    from schemas.datasets import FORMATS

    families = {f.family for f in FORMATS.values()}
    for kind, f in OBJECTIVES.items():
        trainer, config = import_dotted(f.trainer), import_dotted(f.config)
        assert issubclass(config, import_dotted("transformers.TrainingArguments")), kind
        assert trainer.__name__.endswith("Trainer"), kind
        assert set(f.families) <= families, kind


def test_every_adapter_kind_has_its_facts_and_they_name_peft_classes():
    import peft

    from runner.common.models import import_dotted
    from schemas.adapters import ADAPTERS, Adapter

    assert sorted(ADAPTERS) == sorted(_sections(Adapter))
    for kind, f in ADAPTERS.items():
        if kind == "full":
            assert f.peft_config is None and f.peft_type is None
            continue
        config = import_dotted(f.peft_config)
        assert issubclass(config, peft.PeftConfig), kind
        assert peft.PeftType(f.peft_type) in set(peft.PeftType), kind  # the name PEFT writes in adapter_config.json
        assert f.low_rank == (config is peft.LoraConfig), kind


def test_each_objectives_trl_arguments_are_fields_of_its_section_and_its_config_class():
    import dataclasses

    from runner.common.models import import_dotted

    sections = _sections(Objective)
    for kind, f in OBJECTIVES.items():
        config_fields = {x.name for x in dataclasses.fields(import_dotted(f.config))}
        for argument, field in f.trl_args:
            assert field in sections[kind].model_fields, (kind, field)
            assert argument in config_fields, (kind, argument)
        assert {a for a, _ in f.trl_constants} <= config_fields, kind


def test_the_model_type_table_covers_every_shipped_architecture():
    from runner.plan.architecture import _table
    from runner.plan.modeltypes import MODEL_TYPES, UNKNOWN, model_type

    shipped = {a.model_type for a in _table().values()}
    assert shipped <= set(MODEL_TYPES), shipped - set(MODEL_TYPES)
    assert model_type("not-a-model-type") == UNKNOWN and not UNKNOWN.packing_proven
    for name, f in MODEL_TYPES.items():
        assert not (f.packing_proven and f.packing_contaminates), name  # at most one verdict
        assert not (f.state_space and f.attention), name


def test_every_dataset_format_has_its_parser():
    from runner.data.formats import PARSERS
    from schemas.datasets import FORMATS

    assert sorted(FORMATS) == sorted(PARSERS)


# Module-level functions that share a name on purpose: each process's entry point.
ENTRY_POINTS = {"main"}


def test_one_name_per_function_across_the_packages():
    homes: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sources(package):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                    homes.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in homes.items() if len(where) > 1 and name not in ENTRY_POINTS}
    assert twice == {}


def test_no_file_over_400_lines_and_no_function_over_80():
    long_files = [
        str(p.relative_to(ROOT)) for pkg in PACKAGES for p in sources(pkg) if len(p.read_text().splitlines()) > 400
    ]
    long_functions = [
        f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for pkg in PACKAGES
        for p in sources(pkg)
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert (long_files, long_functions) == ([], [])


TRAINING_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed")
COLLECT_WITHOUT_TRAINING = f"""
import importlib, sys
sys.path[:0] = [{str(ROOT / "tests")!r}, {str(ROOT)!r}]

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_LIBRARIES!r}:
            raise ImportError("not installed: " + name)

sys.meta_path.insert(0, Block())
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{{name}}: {{exc}}")
print("\\n".join(failed))
"""


def test_every_test_file_collects_without_the_train_extra():
    """`pip install -e ".[test]"` alone collects the whole suite: test files import torch and the training
    libraries inside tests and fixtures (conftest.LazyModule), not at module level."""
    import subprocess
    import sys

    names = sorted(p.stem for p in (ROOT / "tests").glob("test_*.py"))
    proc = subprocess.run(
        [sys.executable, "-c", COLLECT_WITHOUT_TRAINING, *names], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", proc.stdout
