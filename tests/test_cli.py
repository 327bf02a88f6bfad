"""The `recipe` command: exit codes, output formats, directories, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.cli import main
from schemas.jsonschema import SCHEMA_FILE

from conftest import EXAMPLE_FILE, ROOT

EXAMPLE = EXAMPLE_FILE.read_text()
BROKEN = EXAMPLE.replace("  r: 16", "  r: 16\n  rank: 8").replace("global_batch_size: 8", "global_batch_size: 7")
RANK_LINE = next(i for i, line in enumerate(BROKEN.splitlines(), 1) if "rank: 8" in line)


def test_validate_ok(cli):
    code, out, err = cli("validate", str(EXAMPLE_FILE))
    assert code == 0 and out == "" and "1 recipe valid" in err


def test_validate_invalid_text(cli, write):
    path = write("bad.yaml", BROKEN)
    code, out, err = cli("validate", str(path))
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}:{RANK_LINE}:3: error: adapter.rank: unknown field 'rank'")
    assert ": error: training.global_batch_size: global_batch_size 7 is not a multiple" in lines[1]
    assert "1 of 1 recipe invalid (2 errors)" in err


def test_rules_run_once_schema_is_valid(cli, write):
    path = write("bad.yaml", EXAMPLE.replace("global_batch_size: 8", "global_batch_size: 7"))
    code, out, _ = cli("validate", str(path), "--format", "json")
    (diag,) = json.loads(out)
    assert code == 1
    assert diag["rule"] == "batch-divisibility" and diag["field"] == "training.global_batch_size"
    assert diag["file"] == str(path) and diag["line"] > 1 and diag["column"] > 1 and diag["severity"] == "error"


def test_github_annotations(cli, write):
    path = write("bad.yaml", BROKEN)
    code, out, _ = cli("validate", str(path), "--format", "github")
    assert code == 1
    assert out.startswith(
        f"::error file={path},line={RANK_LINE},col=3,title=unknown-field::adapter.rank: unknown field"
    )


def test_warning_keeps_exit_zero(cli, write):
    path = write("remote.yaml", EXAMPLE.replace("trust_remote_code: false", "trust_remote_code: true"))
    code, out, err = cli("validate", str(path))
    assert code == 0 and ": warning: model.trust_remote_code:" in out and "1 warning" in err


def test_directories_recursive_and_fragments_skipped(cli, write):
    recipes = write("recipes/a.yaml", EXAMPLE).parent
    write("recipes/team/b.yml", "extends: ../_base.yaml\nname: b\n")
    write("recipes/_base.yaml", EXAMPLE.replace("name: llama3-8b-dpo-qlora\n", ""))  # a fragment: no name, skipped
    write("recipes/.hidden/c.yaml", "junk: [")
    code, out, err = cli("validate", str(recipes))
    assert code == 0, out
    assert "2 recipes valid" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["validate"], "the following arguments are required"),
        (["validate", "does/not/exist.yaml"], "no such file or directory"),
        (["validate", "--format", "xml", "x.yaml"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and needle in err and "Traceback" not in err


def test_bad_set_is_usage_error(cli):
    code, _, err = cli("validate", str(EXAMPLE_FILE), "--set", "training.learning_rate")
    assert code == 2 and "KEY=VALUE" in err


def test_empty_directory_is_usage_error(cli, tmp_path):
    code, _, err = cli("validate", str(tmp_path))
    assert code == 2 and "no recipe files" in err


def test_schema_command_prints_the_checked_in_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0 and out == SCHEMA_FILE.read_text()


def test_list(cli):
    code, out, _ = cli("list", str(ROOT / "recipes"))
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split() == ["FILE", "NAME", "OBJECTIVE", "ADAPTER", "MODEL", "HARDWARE"]
    assert any("llama3-8b-dpo-qlora" in r and "qlora" in r and "meta-llama/Meta-Llama-3-8B" in r for r in rows)
    code, out, _ = cli("list", str(ROOT / "recipes"), "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert listed["llama3-8b-dpo-qlora"]["objective"] == "dpo" and listed["llama3-8b-dpo-qlora"]["file"].endswith(
        "llama3-dpo-qlora.yaml"
    )


BLOCKER = textwrap.dedent(
    """
    import sys
    HEAVY = {"torch", "transformers", "trl", "peft", "datasets", "deepspeed", "accelerate", "bitsandbytes"}
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"blocked heavy import: {name}")
    sys.meta_path.insert(0, Block())
    from runner.cli import main
    code = main(sys.argv[1:])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    assert not loaded, loaded
    sys.exit(code)
    """
)


@pytest.mark.parametrize("argv", [["validate", "recipes/"], ["list", "recipes"], ["schema"]])
def test_light_commands_import_no_training_libraries(argv):
    proc = subprocess.run([sys.executable, "-c", BLOCKER, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "recipe"
    assert script.exists(), "install the project (pip install -e .) so the `recipe` command exists"
    proc = subprocess.run([str(script), "validate", str(EXAMPLE_FILE)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_readme_commands_parse():
    """Every `recipe ...` line in the README's command list is a command line the parser accepts."""
    import shlex

    from runner.cli import build_parser

    text = (ROOT / "README.md").read_text()
    block = text.split("## Commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.startswith("recipe ")]
    assert len(lines) >= 15 and any(line.startswith("recipe merge") for line in lines)
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        argv = argv[: argv.index(">")] if ">" in argv else argv
        parser.parse_args(argv)  # exits (SystemExit) on a command line the parser refuses
