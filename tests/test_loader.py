"""The YAML loader: positions, duplicate keys, tags, extends, --set."""

from __future__ import annotations

import pytest

from schemas import UsageError, load
from schemas.yamlsource import parse

from conftest import EXAMPLE_FILE

EXAMPLE = EXAMPLE_FILE.read_text()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def only(loaded, rule):
    hits = [d for d in loaded.diagnostics if d.rule == rule]
    assert len(hits) == 1, [d.text() for d in loaded.diagnostics]
    return hits[0]


def test_contract_recipe_validates_exactly_as_written():
    loaded = load(EXAMPLE_FILE)
    assert loaded.ok and loaded.diagnostics == []
    r = loaded.recipe
    assert (r.adapter.kind, r.adapter.r, r.adapter.alpha, r.adapter.dropout) == ("lora", 16, 32, 0.05)
    assert (r.objective.kind, r.objective.beta, r.objective.loss) == ("dpo", 0.1, ["sigmoid"])
    assert r.training.learning_rate == 5.0e-5 and r.training.micro_batch_size == 2
    assert r.hardware.resolved_profile().gpu_memory_gb > 20
    assert r.datasets.eval[0].limit == 500


def test_unknown_key_is_located_with_suggestion(write):
    text = EXAMPLE.replace("  dropout: 0.05", "  dropout: 0.05\n  lora_dropuot: 0.1")
    d = only(load(write("r.yaml", text)), "unknown-field")
    assert (d.location.line, d.location.column) == (line_of(text, "lora_dropuot"), 3)
    assert d.field == "adapter.lora_dropuot"
    assert "Did you mean" in d.message


def test_names_from_other_tools_point_to_the_recipe_field(write):
    text = EXAMPLE.replace("  seed: 42", "  seed: 42\n  per_device_train_batch_size: 4")
    d = only(load(write("r.yaml", text)), "unknown-field")
    assert "training.micro_batch_size" in d.message


def test_all_errors_reported_at_once(write):
    text = (
        EXAMPLE.replace("r: 16", "r: sixteen")
        .replace("dtype: bfloat16 ", "dtype: bf16 ")
        .replace("seed: 42", "seed: 42\n  bogus: 1")
    )
    loaded = load(write("r.yaml", text))
    assert {d.field for d in loaded.errors} == {"adapter.r", "model.dtype", "training.bogus"}
    assert all(d.location.line for d in loaded.errors)


def test_missing_required_field_points_at_its_section(write):
    text = EXAMPLE.replace("  learning_rate: 5.0e-5\n", "")
    d = only(load(write("r.yaml", text)), "missing-field")
    assert d.field == "training.learning_rate"
    assert d.location.line == line_of(text, "training:")


def test_duplicate_keys_are_errors(write):
    text = EXAMPLE.replace("  beta: 0.1", "  beta: 0.1\n  beta: 0.2")
    d = only(load(write("r.yaml", text)), "duplicate-key")
    assert d.location.line == line_of(text, "beta: 0.2")
    assert f"line {line_of(text, 'beta: 0.1')}" in d.message


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!!python/name:os.system", "!custom", "!!binary"])
def test_tags_are_refused(write, tag):
    text = EXAMPLE.replace("name_or_path: meta-llama/Meta-Llama-3-8B", f"name_or_path: {tag} x")
    d = only(load(write("r.yaml", text)), "yaml-tag")
    assert d.location.line == line_of(text, "name_or_path")
    assert "not allowed" in d.message


def test_python_object_tag_never_constructs(write, tmp_path):
    marker = tmp_path / "pwned"
    text = EXAMPLE.replace(
        "name_or_path: meta-llama/Meta-Llama-3-8B",
        f"name_or_path: !!python/object/apply:os.system ['touch {marker}']",
    )
    load(write("r.yaml", text))
    assert not marker.exists()


def test_yaml_syntax_error_is_located(write):
    text = EXAMPLE.replace("  r: 16", "  r: [16")
    d = only(load(write("r.yaml", text)), "yaml-syntax")
    assert d.location.line is not None and d.location.line >= line_of(text, "r: [16")


def test_multiple_documents_refused(write):
    d = only(load(write("r.yaml", EXAMPLE + "\n---\nname: two\n")), "yaml-syntax")
    assert "one YAML document" in d.message


@pytest.mark.parametrize(
    "text,rule", [("", "not-a-mapping"), ("- a\n- b\n", "not-a-mapping"), ("just text\n", "not-a-mapping")]
)
def test_non_mapping_files(write, text, rule):
    only(load(write("r.yaml", text)), rule)


def test_not_utf8(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert only(load(path), "file-encoding").location.file == str(path)


def test_yaml12_numbers_and_booleans():
    data = parse("a: 5e-5\nb: 1.0e-4\nc: no\nd: on\ne: true\nf: 1_000\ng: .5\n", "x").data
    assert data == {"a": 5e-5, "b": 1e-4, "c": "no", "d": "on", "e": True, "f": 1000, "g": 0.5}


def test_learning_rate_without_dot_is_a_number(write):
    loaded = load(write("r.yaml", EXAMPLE.replace("learning_rate: 5.0e-5", "learning_rate: 5e-5")))
    assert loaded.ok and loaded.recipe.training.learning_rate == 5e-5


def test_recursive_alias_and_alias_bomb_do_not_hang():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")
    )
    parsed = parse(bomb, "bomb.yaml")
    assert parsed.data is None and parsed.diagnostics[0].rule == "yaml-too-large"


def test_merge_keys_work():
    data = parse("base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n", "x").data
    assert data["child"] == {"x": 1, "y": 3}


# --- extends -----------------------------------------------------------------

BASE = EXAMPLE.replace("name: llama3-8b-dpo-qlora", "name: base")


def test_extends_deep_merges_child_wins_lists_replace(write):
    write("base.yaml", BASE)
    child = write(
        "team/child.yaml",
        "extends: ../base.yaml\nname: child\nobjective:\n  beta: 0.2\ndatasets:\n  train:\n"
        "    - source: jsonl:data/mine.jsonl\n      format: preference\n",
    )
    loaded = load(child)
    assert loaded.ok, [d.text() for d in loaded.diagnostics]
    r = loaded.recipe
    assert r.name == "child" and r.objective.beta == 0.2 and r.objective.loss == ["sigmoid"]
    # lists replace; a relative path is relative to the file that names it
    assert [d.source for d in r.datasets.train] == [f"jsonl:{child.parent / 'data' / 'mine.jsonl'}"]
    assert r.datasets.eval[0].source == "hf:Anthropic/hh-rlhf"  # untouched mappings are inherited
    assert r.adapter.r == 16
    assert loaded.files == [str(child), "base.yaml"] or loaded.files[0] == str(child)


def test_extends_errors_point_into_the_file_that_has_them(write):
    base = write("base.yaml", BASE.replace("  r: 16", "  r: 16\n  rank: 8"))
    child = write("child.yaml", "extends: base.yaml\nname: child\nobjective:\n  betta: 0.2\n")
    loaded = load(child)
    by_field = {d.field: d for d in loaded.errors}
    assert by_field["adapter.rank"].location.file.endswith("base.yaml")
    assert by_field["adapter.rank"].location.line == line_of(base.read_text(), "rank: 8")
    assert by_field["objective.betta"].location.file == str(child)
    assert by_field["objective.betta"].location.line == 4


def test_extends_kind_change_replaces_the_section(write):
    write("base.yaml", BASE)
    child = write("child.yaml", "extends: base.yaml\nname: child\nadapter:\n  kind: ia3\n")
    loaded = load(child)
    assert loaded.ok, [d.text() for d in loaded.diagnostics]
    assert loaded.recipe.adapter.kind == "ia3"


def test_extends_chain_and_list(write):
    write("a.yaml", BASE)
    write("b.yaml", "extends: a.yaml\ntraining:\n  learning_rate: 1.0e-5\n")
    write("c.yaml", "training:\n  seed: 7\n")
    d = write("d.yaml", "extends: [b.yaml, c.yaml]\nname: d\n")
    r = load(d).recipe
    assert (r.name, r.training.learning_rate, r.training.seed, r.training.global_batch_size) == ("d", 1e-5, 7, 8)


def test_extends_cycle_is_reported(write):
    write("a.yaml", "extends: b.yaml\nname: a\n")
    write("b.yaml", "extends: a.yaml\n")
    d = only(load(write("c.yaml", "extends: a.yaml\nname: c\n")), "extends-cycle")
    assert "cycle" in d.message and "a.yaml" in d.message


def test_extends_missing_base(write):
    d = only(load(write("c.yaml", "extends: nowhere.yaml\nname: c\n")), "file-not-found")
    assert d.location.line == 1 and d.field == "extends"


# --- --set ---------------------------------------------------------------------


def test_set_overrides_parse_yaml_and_are_marked(write):
    path = write("r.yaml", EXAMPLE)
    loaded = load(
        path, ["training.learning_rate=1e-4", "adapter.target_modules=[q_proj, v_proj]", "datasets.train.0.limit=10"]
    )
    assert loaded.ok
    r = loaded.recipe
    assert r.training.learning_rate == 1e-4 and r.adapter.target_modules == ["q_proj", "v_proj"]
    assert r.datasets.train[0].limit == 10
    bad = load(path, ["training.micro_batch_size=3"])
    d = only(bad, "batch-divisibility")
    assert d.location.line is not None  # global_batch_size came from the file
    bad = load(path, ["adapter.r=big"])
    d = only(bad, "invalid-value")
    assert d.location.via_set and d.text().startswith(f"{path}:--set: error: adapter.r:")


def test_set_unknown_field_suggests(write):
    d = only(load(write("r.yaml", EXAMPLE), ["training.learning_rat=1e-4"]), "unknown-field")
    assert d.location.via_set and "learning_rate" in d.message


@pytest.mark.parametrize("bad", ["training.learning_rate", "=3", "a..b=1"])
def test_malformed_set_is_a_usage_error(write, bad):
    with pytest.raises(UsageError):
        load(write("r.yaml", EXAMPLE), [bad])


def test_set_index_out_of_range(write):
    d = only(load(write("r.yaml", EXAMPLE), ["datasets.train.5.limit=3"]), "set-path")
    assert "out of range" in d.message


def test_ppo_is_refused_with_the_supported_path(write):
    d = only(load(write("r.yaml", EXAMPLE.replace("kind: dpo ", "kind: ppo "))), "unsupported-objective")
    assert d.field == "objective.kind"
    assert "rloo" in d.message and "grpo" in d.message and "reward" in d.message


def test_rules_are_checked_alongside_unknown_keys(write):
    text = EXAMPLE.replace("  r: 16", "  r: 16\n  rank: 8").replace("global_batch_size: 8", "global_batch_size: 7")
    loaded = load(write("r.yaml", text))
    assert [d.rule for d in loaded.diagnostics] == ["unknown-field", "batch-divisibility"]


def test_rules_wait_for_other_schema_errors(write):
    text = EXAMPLE.replace("  r: 16", "  r: sixteen").replace("global_batch_size: 8", "global_batch_size: 7")
    loaded = load(write("r.yaml", text))
    assert [d.rule for d in loaded.diagnostics] == ["invalid-value"]
