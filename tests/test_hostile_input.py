"""Hostile and broken input: a located one-line error, never a traceback, a hang or a file's contents echoed.

`extends` reads only regular `.yaml`/`.yml` files below a size limit inside the allowed folder; YAML nesting,
control characters, invalid UTF-8 and surrogates are located; a data row with a key given twice, half a surrogate
pair or invalid UTF-8 is a located bad row; a chat template is rendered in a limited sandbox first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from runner.data.check import check_recipe
from runner.data.readers import jsonl_rows
from schemas import load

from conftest import ROOT

TINY_SFT = ROOT / "recipes/tiny/sft-lora.yaml"
TINY_DPO = ROOT / "recipes/tiny/dpo-qlora.yaml"
LOCATED = re.compile(r"^\S+:(\d+:\d+|--set): (error|warning): ")


def lines_of(loaded) -> list[str]:
    return [d.text() for d in loaded.diagnostics]


def child(tmp_path: Path, target: str, name: str = "child.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"version: 1\nname: child\nextends: {target}\n")
    return path


def refusal(loaded, rule: str):
    found = [d for d in loaded.diagnostics if d.rule == rule]
    assert found, lines_of(loaded)
    return found[0]


# --- item 4: what `extends` reads ----------------------------------------------------------------------------------


def test_extends_refuses_a_file_that_is_not_yaml_without_reading_it(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root: $6$hash-of-the-root-password\ndaemon: '*'\n")
    loaded = load(child(tmp_path, str(secret)))
    d = refusal(loaded, "extends-refused")
    assert d.location.line == 3 and d.field == "extends" and ".yaml or .yml" in d.message
    assert "hash-of-the-root" not in "\n".join(lines_of(loaded)) and "daemon" not in "\n".join(lines_of(loaded))


def test_extends_proc_files_are_never_echoed_even_in_github_annotations(cli, tmp_path):
    code, out, err = cli("validate", "--format", "github", str(child(tmp_path, "/proc/self/status")))
    assert code == 1 and "extends-refused" in out
    assert "Umask" not in out + err and "TracerPid" not in out + err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_extends_a_device_is_refused_at_once(tmp_path, device):
    link = tmp_path / "device.yaml"  # even named like a recipe
    link.symlink_to(device)
    for target in (device, str(link)):
        d = refusal(load(child(tmp_path, target)), "extends-refused")
        assert d.location.line == 3


def test_extends_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    code = (
        "import sys; from schemas import load; "
        f"print('\\n'.join(d.text() for d in load({str(child(tmp_path, fifo.name))!r}).diagnostics))"
    )
    done = subprocess.run(
        ["python", "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert "a FIFO (named pipe), not a regular recipe file" in done.stdout, done.stdout + done.stderr


def test_extends_a_directory_and_a_large_file_are_refused(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    assert "is a directory" in refusal(load(child(tmp_path, "folder.yaml")), "file-not-found").message
    (tmp_path / "big.yaml").write_text("description: " + "x" * (2 << 20) + "\n")
    assert "bytes" in refusal(load(child(tmp_path, "big.yaml")), "extends-refused").message


def test_a_recipe_file_that_is_a_device_is_refused(cli):
    code, out, err = cli("validate", "/dev/zero")
    assert code == 1 and "/dev/zero: error: /dev/zero is a character device, not a regular recipe file" in out


def test_a_yaml_base_that_is_not_a_recipe_is_named_not_echoed(tmp_path):
    (tmp_path / "creds.yaml").write_text("aws_secret_access_key: AKIAEXAMPLESECRET\n")
    loaded = load(child(tmp_path, "creds.yaml"))
    d = refusal(loaded, "extends-not-a-recipe")
    assert d.location.line == 3 and "not recipe sections" in d.message
    assert "AKIA" not in "\n".join(lines_of(loaded)) and "aws_secret" not in "\n".join(lines_of(loaded))


def test_a_yaml_error_in_a_base_that_is_not_a_recipe_prints_its_position_not_its_text(tmp_path):
    (tmp_path / "notes.yaml").write_text("token: hunter2\nlist: [\n  - secret-value\n")
    loaded = load(child(tmp_path, "notes.yaml"))
    d = refusal(loaded, "extends-not-a-recipe")
    assert re.search(r"notes\.yaml:3:3: invalid YAML", d.message), d.message
    text = "\n".join(lines_of(loaded))
    assert "hunter2" not in text and "secret-value" not in text


def test_extends_chain_depth_is_limited(tmp_path):
    for i in range(20):
        (tmp_path / f"b{i}.yaml").write_text(f"extends: b{i + 1}.yaml\n" if i < 19 else "description: end\n")
    d = refusal(load(child(tmp_path, "b0.yaml")), "extends-cycle")
    assert "deeper than" in d.message


def test_extends_outside_the_root_is_refused_and_the_flag_allows_it(cli, tmp_path):
    (tmp_path / "shared.yaml").write_text(
        TINY_SFT.read_text().replace("_tiny-base.yaml", str(ROOT / "recipes/tiny/_tiny-base.yaml"))
    )
    team = tmp_path / "team"
    team.mkdir()
    recipe = child(team, "../shared.yaml")
    code, out, _ = cli("validate", str(recipe))
    assert code == 1 and f"{recipe}:3:10: error: extends: " in out and "--extends-root DIR" in out
    code, out, err = cli("validate", "--extends-root", str(tmp_path), str(recipe))
    assert code == 0, out + err


def test_the_default_root_is_the_recipes_repository(cli, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "base.yaml").write_text(
        TINY_SFT.read_text().replace("_tiny-base.yaml", str(ROOT / "recipes/tiny/_tiny-base.yaml"))
    )
    (tmp_path / "outside.yaml").write_text("description: outside\n")
    (repo / "team").mkdir()
    code, out, err = cli("validate", str(child(repo / "team", "../base.yaml")))
    assert code == 0, out + err
    code, out, _ = cli("validate", str(child(repo / "team", "../../outside.yaml", "other.yaml")))
    assert code == 1 and "is outside" in out and str(repo) in out


# --- item 5: located errors, never a traceback ------------------------------------------------------------------------


def test_deep_nesting_in_a_recipe_file_is_located(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nmodel: " + "[" * 999 + "]" * 999 + "\n")
    [d] = load(path).diagnostics
    assert d.rule == "yaml-too-large" and d.location.line == 2 and "nested more than 100" in d.message


def test_deep_nesting_in_a_set_value_is_a_usage_error(cli):
    code, _, err = cli("validate", str(TINY_SFT), "--set", "model.name_or_path=" + "[" * 700 + "]" * 700)
    assert code == 2 and "nested more than 100 levels" in err and "Traceback" not in err


def test_a_nul_is_located_where_it_is(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_text("version: 1\nname: ab\x00c\n")
    [d] = load(path).diagnostics
    assert (d.location.line, d.location.column) == (2, 9) and "U+0000" in d.message


def test_invalid_utf8_in_a_recipe_is_located_by_line_and_column(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nname: caf\xe9\n".encode("latin-1"))
    [d] = load(path).diagnostics
    assert d.text().startswith(f"{path}:2:10: error: the file is not UTF-8 text")


def test_surrogates_in_a_recipe_and_in_set_are_located(cli, tmp_path):
    path = tmp_path / "sur.yaml"
    path.write_text('version: 1\nname: "h\\ud800i"\n')
    [d] = load(path).diagnostics
    assert d.location.line == 2 and LOCATED.match(d.text())
    code, _, err = cli("validate", str(TINY_SFT), "--set", "name=h\udcffi")
    assert code == 2 and "U+DCFF" in err


def data_recipe(tmp_path: Path, rows: bytes, base: Path = TINY_SFT, fmt: str = "messages"):
    data = tmp_path / "d.jsonl"
    data.write_bytes(rows)
    path = tmp_path / "r.yaml"
    path.write_text(
        f"version: 1\nname: hostile\nextends: {base}\ndatasets:\n  train: [{{source: 'jsonl:{data}', format: {fmt}}}]\n"
    )
    loaded = load(path)
    assert loaded.recipe is not None and not loaded.errors, lines_of(loaded)
    return loaded.recipe, data


def good(i: int) -> bytes:
    row = {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    return json.dumps(row).encode() + b"\n"


def test_a_lone_surrogate_in_a_row_is_a_located_bad_row(tmp_path):
    hostile = b'{"messages": [{"role": "user", "content": "h\\ud800i"}, {"role": "assistant", "content": "a"}]}\n'
    recipe, data = data_recipe(tmp_path, good(1) + hostile + good(2))
    report = check_recipe(recipe)
    [finding] = report.examples["invalid-utf8"]
    column = hostile.index(b"\\ud800") + 1
    assert finding.where == f"{data}:2:{column}" and "surrogate" in finding.detail


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine(tmp_path):
    pair = b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00 \\\\ud800"}, '
    pair += b'{"role": "assistant", "content": "a"}]}\n'
    recipe, _ = data_recipe(tmp_path, pair + good(1))
    assert check_recipe(recipe).bad == 0


def test_invalid_utf8_in_a_row_is_located_by_column(tmp_path):
    recipe, data = data_recipe(tmp_path, good(1) + b'{"messages": "caf\xe9"}\n')
    [finding] = check_recipe(recipe).examples["invalid-utf8"]
    assert finding.where == f"{data}:2:18"


def test_a_key_given_twice_is_a_duplicate_key_bad_row(tmp_path):
    twice = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "messages": []}\n'
    recipe, data = data_recipe(tmp_path, good(1) + twice + good(2))
    report = check_recipe(recipe)
    assert report.counts == {"duplicate-key": 1} and report.refused
    [finding] = report.examples["duplicate-key"]
    column = twice.rindex(b'"messages"') + 1
    assert finding.where == f"{data}:2:{column}" and '"messages"' in finding.detail
    assert "duplicate-key" in report.render()


def test_duplicate_keys_inside_nested_objects_too():
    rows = list(jsonl_rows_of(b'{"a": {"b": 1, "b": 2}}\n'))
    assert rows[0][2][0] == "duplicate-key"


def jsonl_rows_of(data: bytes):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        f.write(data)
    try:
        yield from jsonl_rows(Path(f.name), 1 << 20)
    finally:
        os.unlink(f.name)


MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "template,needle",
    [
        ('{{ "A" * 1000000000 }}', "over the limit"),
        ("{% for i in range(10**12) %}{% endfor %}", "over the limit"),
        ("{{ messages.__class__.__mro__ }}", "the sandbox forbids"),
        ('{{ raise_exception("roles must alternate") }}', "the template raises: roles must alternate"),
        ("{{ 2 ** 100000 }}", "exponent"),
        ('{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s }}{% endmacro %}{{ f("ab", 60) }}', "over the limit"),
        ('{% set ns = namespace(x="a") %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}', "limit"),
        ('{{ "a" | center(1000000000) }}', "over the limit"),
        ('{{ "{:>1000000000}".format("a") }}', "field width"),
        ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", "steps"),
        ("{% if %}", "invalid Jinja at line 1"),
    ],
)
def test_a_hostile_template_is_refused_in_one_line(template, needle):
    from runner.common.sandbox import TemplateRefused, render_limited

    with pytest.raises(TemplateRefused) as exc:
        render_limited(template, MESSAGES)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_the_shipped_templates_render_in_the_sandbox():
    from runner.common.sandbox import render_limited

    for path in sorted((ROOT / "runner/templates").glob("*.jinja")):
        text = render_limited(path.read_text(), MESSAGES, True, bos_token="<s>", eos_token="</s>")
        assert "hi" in text, path


class _Tokenizer:
    special_tokens_map = {"eos_token": "</s>"}

    def __init__(self, template: str):
        self.template = template

    def get_chat_template(self, *args):
        return self.template


def test_the_preflight_refuses_a_template_that_fails_in_the_sandbox():
    from runner.common.sandbox import template_refusal

    assert "over the limit" in template_refusal(_Tokenizer('{{ "A" * 1000000000 }}'))
    assert template_refusal(_Tokenizer("{% for m in messages %}{{ m.content }}{% endfor %}")) is None


@pytest.mark.parametrize("command", [["--check"], ["--template"]])
def test_data_commands_refuse_a_hostile_template_with_a_located_line(cli, tmp_path, command):
    template = tmp_path / "huge.jinja"
    template.write_text('{{ "A" * 1000000000 }}')
    code, out, err = cli("data", str(TINY_SFT), *command, "--set", f"model.chat_template={template}")
    assert code == 1 and "Traceback" not in err
    assert f"{TINY_SFT}:--set: error: model.chat_template: the chat template cannot render train row 0" in err


# --- found by benchmarks/fuzz_inputs.py ---------------------------------------------------------------------------


def test_a_model_name_too_long_for_a_path_is_not_a_traceback(cli):
    code, out, err = cli("validate", str(TINY_SFT), "--set", "model.name_or_path=" + "x" * 100_000)
    assert code == 0 and "Traceback" not in err and "memory not estimated" in out


def test_a_csv_header_over_the_field_limit_is_an_unreadable_source(tmp_path):
    recipe, data = data_recipe(tmp_path, b'"' + b"x" * 200_000 + b'"\n')
    data.rename(tmp_path / "d.csv")
    recipe.datasets.train[0].source = f"csv:{tmp_path / 'd.csv'}"
    report = check_recipe(recipe)
    assert report.refused and any("header line is not valid CSV" in u for u in report.unreadable)


def test_a_number_of_5000_digits_in_a_row_is_a_malformed_line():
    [(number, row, problem)] = list(jsonl_rows_of(b'{"a": ' + b"9" * 5000 + b"}\n"))
    assert row is None and problem[0] == "malformed-line" and "4300 digits" in problem[1]
