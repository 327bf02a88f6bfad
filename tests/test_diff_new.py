"""`recipe diff` and `recipe new`: comparing resolved recipes and plans, and starting a recipe from another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from schemas import load

from conftest import EXAMPLE_FILE, ROOT
from test_cli import BLOCKER


def child(tmp_path: Path, body: str, base: Path = EXAMPLE_FILE) -> Path:
    path = tmp_path / "child.yaml"
    path.write_text(f"version: 1\nextends: {base}\nname: child\n{body}")
    return path


def test_diff_shows_exactly_the_fields_an_extends_child_changes(cli, tmp_path):
    path = child(tmp_path, "training: {learning_rate: 1.0e-4, micro_batch_size: 4}\nadapter: {r: 32}\n")
    code, out, err = cli("diff", str(EXAMPLE_FILE), str(path), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {r["field"]: (r["a"], r["b"]) for r in result["recipe"]} == {
        "name": ("llama3-8b-dpo-qlora", "child"),
        "adapter.r": (16, 32),
        "training.learning_rate": (5e-5, 1e-4),
        "training.micro_batch_size": (2, 4),
    }
    plan = {r["field"]: (r["a"], r["b"]) for r in result["plan"]}
    assert plan["micro batch size"] == (2, 4) and plan["gradient accumulation steps"] == (4, 2)
    assert "global batch size" not in plan and "precision" not in plan  # unchanged rows are not shown
    assert plan["trainable parameters"][1] == 2 * plan["trainable parameters"][0]  # LoRA parameters grow with r
    assert plan["memory per GPU (GiB)"][1] > plan["memory per GPU (GiB)"][0]
    code, text, _ = cli("diff", str(EXAMPLE_FILE), str(path))
    lines = text.splitlines()
    assert any(line.split()[:3] == ["training.learning_rate", "5e-05", "0.0001"] for line in lines)
    assert any(line.split()[:6] == ["gradient", "accumulation", "steps", "4", "2", "-2"] for line in lines)


def test_diff_of_the_same_recipe_and_of_different_adapter_kinds(cli, tmp_path):
    code, out, _ = cli("diff", str(EXAMPLE_FILE), str(EXAMPLE_FILE))
    assert code == 0 and out.startswith("no differences")
    path = child(
        tmp_path, "adapter: {kind: prefix, num_virtual_tokens: 20}\ntraining: {gradient_checkpointing: false}\n"
    )
    code, out, _ = cli("diff", str(EXAMPLE_FILE), str(path), "--json")
    rows = {r["field"]: r for r in json.loads(out)["recipe"]}
    assert rows["adapter.kind"]["a"] == "lora" and rows["adapter.kind"]["b"] == "prefix"
    assert rows["adapter.r"]["only_in"] == "a" and rows["adapter.num_virtual_tokens"]["only_in"] == "b"
    plan = {r["field"]: r for r in json.loads(out)["plan"]}
    assert plan["peft"]["a"] == "peft.LoraConfig" and plan["peft"]["b"] == "peft.PrefixTuningConfig"


def test_diff_compares_list_items_and_reports_problems(cli, tmp_path):
    path = child(
        tmp_path,
        "datasets:\n  train: [{source: 'hf:HuggingFaceH4/ultrafeedback_binarized', split: "
        "train_prefs, format: ultrafeedback}]\n"
        "hardware: {profile: t4-16gb}\nmodel: {dtype: float16}\nquantization: {compute_dtype: float16}\n"
        "training: {max_length: 4096, micro_batch_size: 8, global_batch_size: 8}\n",
    )
    code, out, err = cli("diff", str(EXAMPLE_FILE), str(path))
    assert code == 0, err
    assert "datasets.train.0.source" in out and "datasets.train.0.format" in out and "datasets.train.0.split" in out
    assert "B does not plan cleanly:" in out and "GiB" in out.split("B does not plan cleanly:")[1]
    assert "fits" in out


def test_diff_of_a_run_directory_and_of_an_invalid_recipe(cli, tmp_path):
    out_dir = tmp_path / "run"
    code, _, err = cli("run", str(ROOT / "recipes/tiny/sft-lora.yaml"), "--dry-run", "--set", f"output.dir={out_dir}")
    assert code == 0, err
    code, out, err = cli("diff", str(out_dir), str(ROOT / "recipes/tiny/sft-lora.yaml"), "--json")
    assert code == 0, err
    rows = {r["field"]: (r["a"], r["b"]) for r in json.loads(out)["recipe"]}
    assert rows.pop("output.dir") == (str(out_dir), None)
    assert rows and all(b == "auto" and a != "auto" for a, b in rows.values()), (
        rows
    )  # the run's resolved recipe decided every auto
    assert json.loads(out)["plan"] == []  # and plans exactly like the recipe it came from
    bad = child(tmp_path, "training: {learning_rat: 1.0}\n")
    code, out, err = cli("diff", str(EXAMPLE_FILE), str(bad))
    assert code == 1 and out == "" and f"{bad}:4:" in err and "training.learning_rat" in err
    code, _, err = cli("diff", str(EXAMPLE_FILE), str(tmp_path / "nothing.yaml"))
    assert code == 2 and "no such recipe file or output directory" in err


def test_new_writes_a_valid_recipe_that_plans_like_its_base(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("new", "team/my-dpo", "--from", str(EXAMPLE_FILE))
    assert code == 0, err
    path = tmp_path / "team" / "my-dpo.yaml"
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("=", 1)[1]).resolve() == (ROOT / "schemas" / "recipe.schema.json").resolve()
    data = yaml.safe_load(text)
    assert data["name"] == "my-dpo" and (path.parent / data["extends"]).resolve() == EXAMPLE_FILE.resolve()
    assert data["output"] == {"dir": "outputs/my-dpo"}  # the base pins its output.dir; the new recipe must not share it
    assert "#   learning_rate: 5.0e-05" in text and "#   name_or_path: meta-llama/Meta-Llama-3-8B" in text
    loaded = load(path)
    assert loaded.ok, loaded.diagnostics
    code, out, _ = cli("diff", str(EXAMPLE_FILE), str(path), "--json")
    assert {r["field"] for r in json.loads(out)["recipe"]} == {"name", "description", "output.dir"}
    assert json.loads(out)["plan"] == []
    code, _, err = cli("new", "team/my-dpo", "--from", str(EXAMPLE_FILE))
    assert code == 2 and "already exists" in err and "--force" in err
    assert path.read_text() == text


def test_new_finds_shipped_recipes_by_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("init", "mine", "--from", "tiny-sft-lora")
    assert code == 0, err
    data = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    assert Path(data["extends"]).resolve() == (ROOT / "recipes/tiny/sft-lora.yaml").resolve() and "output" not in data
    code, _, err = cli("new", "other", "--from", "tiny-sft-lorra")
    assert code == 2 and "did you mean tiny-sft-lora" in err
    code, _, err = cli("new", "frag", "--from", str(ROOT / "recipes/tiny/_tiny-base.yaml"))
    assert (
        code == 1
        and err.startswith("recipe new: ")
        and "is a fragment" in err
        and not (tmp_path / "frag.yaml").exists()
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE_FILE.read_text().replace("  r: 16", "  rank: 16"))
    code, _, err = cli("new", "child", "--from", str(broken))
    assert code == 1 and f"{broken}:" in err and "adapter.rank" in err and "nothing was written" in err
    assert not (tmp_path / "child.yaml").exists()
    code, _, err = cli("new", "bad name!", "--from", "tiny-sft-lora")
    assert code == 2 and "a recipe name uses letters" in err


@pytest.mark.parametrize(
    "argv", [["diff", "recipes/llama3-dpo-qlora.yaml", "recipes/llama3-dpo-qlora-ultrafeedback.yaml"]]
)
def test_diff_imports_no_training_libraries(argv):
    proc = subprocess.run([sys.executable, "-c", BLOCKER, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "datasets.train.0.format" in proc.stdout
