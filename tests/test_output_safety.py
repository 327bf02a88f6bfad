"""A run writes only inside its own directory, never through a symlink, and removes only what a run wrote
(docs/DESIGN principle 6): the output directory's marker and manifest, and the preflight's refusals."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from schemas import load

from conftest import ROOT

TINY_SFT = ROOT / "recipes" / "tiny" / "sft-lora.yaml"


def _recipe(*overrides: str):
    loaded = load(TINY_SFT, list(overrides))
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    return loaded.recipe


def _check(out, overwrite=False, resume=False, **kwargs):
    from runner.run.preflight import check_output_dir

    return check_output_dir(_recipe(f"output.dir={out}"), overwrite, resume, **kwargs)


def _rules(problems) -> list[str]:
    return [p.rule for p in problems]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_holding_files_no_run_wrote_is_refused_naming_them(tmp_path, overwrite):
    out = tmp_path / "project"
    out.mkdir()
    for name in ("README.md", "status.json", "tokenizer.json"):  # names a run writes too
        (out / name).write_text("the user's own")
    (problem,) = _check(out, overwrite=overwrite)
    assert problem.rule == "output-dir-not-a-run" and problem.field == "output.dir"
    assert all(name in problem.message for name in ("README.md", "status.json", "tokenizer.json"))
    assert _check(tmp_path / "new", overwrite=overwrite) == []
    (tmp_path / "empty").mkdir()
    assert _check(tmp_path / "empty", overwrite=overwrite) == []


@pytest.mark.parametrize("where", ["root", "home", "cwd", "recipe-dir", "data-dir", "repository"])
def test_the_root_home_current_recipe_and_data_directories_are_never_output_dirs(where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = _recipe()
    data = Path(next(e.source for e in recipe.datasets.train).split(":", 1)[1])
    out = {
        "root": "/",
        "home": "~/",  # a bare ~ is YAML null
        "cwd": ".",
        "recipe-dir": str(TINY_SFT.parent),
        "data-dir": str(data.parent),
        "repository": str(ROOT),
    }[where]
    for overwrite in (False, True):
        problems = _check(out, overwrite=overwrite, recipe_file=str(TINY_SFT))
        assert _rules(problems) == ["output-dir-unsafe"], problems
        assert "set output.dir to a new directory" in problems[0].message


def test_overwrite_removes_only_what_a_run_wrote(tmp_path):
    from runner.common import rundir
    from runner.common.lock import acquire

    out = tmp_path / "run"
    rundir.take(out)
    rundir.record_created(out, "launch", "status.json", "checkpoint-*", "adapter_model.safetensors")
    for name in ("launch", "checkpoint-2", "checkpoint-4"):
        (out / name).mkdir()
        (out / name / "file").write_text("x")
    (out / "status.json").write_text("{}")
    (out / ".status.json.tmp1234").write_text("{")  # write_atomic's temporary sibling, left by a killed run
    (out / "adapter_model.safetensors").write_text("weights")
    assert _check(out, overwrite=True) == []
    (out / "notes.txt").write_text("mine")  # appeared in a run's directory
    (problem,) = _check(out, overwrite=True)
    assert (
        problem.rule == "output-dir-not-a-run" and "notes.txt" in problem.message and "would delete" in problem.message
    )
    lock = acquire(out, "recipe run test")
    assert _check(out, overwrite=True) == []  # a run holds it: the lock refuses the second run, naming the first
    removed = rundir.clear(out)
    assert sorted(removed) == [
        ".status.json.tmp1234",
        "adapter_model.safetensors",
        "checkpoint-2",
        "checkpoint-4",
        "launch",
        "status.json",
    ]
    assert sorted(p.name for p in out.iterdir()) == [".recipe-run", ".recipe-run.lock", "notes.txt"]
    assert rundir.read_manifest(out) == {"dry_run": False, "paths": []}
    lock.release()


def test_a_dry_run_does_not_make_a_directory_a_run_for_overwrite(cli, tmp_path):
    out = tmp_path / "work"
    code, _, err = cli("run", str(TINY_SFT), "--dry-run", "--set", f"output.dir={out}")
    assert code == 0, err
    assert (out / "launch" / "plan.json").is_file()
    marker = [json.loads(line) for line in (out / ".recipe-run").read_text().splitlines()]
    assert marker[0] == {"recipe_run": 1, "dry_run": True} and {"path": "launch"} in marker
    (out / "src").mkdir()
    (out / "src" / "main.py").write_text("print('mine')\n")
    (out / "data.csv").write_text("a,b\n")
    (problem,) = _check(out, overwrite=True)
    assert problem.rule == "output-dir-not-a-run" and "data.csv" in problem.message and "src" in problem.message
    (out / "src" / "main.py").unlink()
    (out / "src").rmdir()
    (out / "data.csv").unlink()
    assert _check(out, overwrite=True) == []  # only its launch files: they are the run's to remove


def test_a_dry_run_into_a_directory_holding_the_users_files_writes_nothing(cli, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "main.py").write_text("print('mine')\n")
    code, _, err = cli("run", str(TINY_SFT), "--dry-run", "--set", f"output.dir={out}")
    assert code == 1 and "output.dir" in err and "main.py" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["main.py"]


def test_symlinks_in_or_as_the_output_dir_are_refused_before_launch(tmp_path):
    from runner.common import rundir

    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n")
    out = tmp_path / "outputs" / "team-sft"
    rundir.take(out)
    rundir.record_created(out, "chat_template.jinja", "logs")
    (out / "chat_template.jinja").symlink_to(home / ".bashrc")
    (problem,) = _check(out)
    assert problem.rule == "output-dir-symlink" and "chat_template.jinja" in problem.message
    assert "remove them" in problem.message
    (out / "chat_template.jinja").unlink()
    (out / "logs").symlink_to(home)
    assert _rules(_check(out)) == ["output-dir-symlink"]
    (out / "logs").unlink()
    (out / "logs").mkdir()
    (out / "logs" / "train-rank0.log").symlink_to(home / ".bashrc")  # deeper, where the run writes too
    assert _rules(_check(out)) == ["output-dir-symlink"]
    (out / "logs" / "train-rank0.log").unlink()
    assert _check(out) == []
    linked = tmp_path / "linked"
    linked.symlink_to(out)
    (problem,) = _check(linked)
    assert problem.rule == "output-dir-symlink" and "is a symlink" in problem.message
    assert (home / ".bashrc").read_text() == "# mine\n"


def test_the_files_a_run_appends_to_are_not_opened_through_a_link(tmp_path):
    from runner.common.lock import LOCK_NAME, LockError, acquire
    from runner.run.outputs import MetricsCallback
    from runner.run.quiet import open_no_follow

    target = tmp_path / "bashrc"
    target.write_text("# mine\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(target)
    with pytest.raises(LockError, match="output.dir: cannot write"):
        acquire(out, "recipe run test")
    (out / "metrics.jsonl").symlink_to(target)
    with pytest.raises(OSError) as followed:
        open_no_follow(out / "metrics.jsonl")
    assert followed.value.errno == errno.ELOOP

    class State:
        is_world_process_zero, global_step, max_steps, epoch = True, 1, 2, 0.5

    with pytest.raises(OSError):
        MetricsCallback(out).on_log(None, State(), None, logs={"loss": 1.0})
    assert target.read_text() == "# mine\n"


def test_the_training_process_refuses_links_that_appeared_after_the_preflight(tmp_path):
    from runner.common.rundir import OutputDirError
    from runner.run.outputdir import refuse_symlinks

    out = tmp_path / "out"
    out.mkdir()
    refuse_symlinks(out)
    (out / "tokenizer.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputDirError, match="tokenizer.json"):
        refuse_symlinks(out)


def test_tilde_in_output_dir_expands_and_the_reference_says_what_it_is_relative_to():
    from schemas.sections import Output

    assert _recipe("output.dir=~/runs/x").output_dir == str(Path.home() / "runs" / "x")
    description = Output.model_fields["dir"].description
    assert "relative to the directory `recipe run` is started in" in description and "`~`" in description


def test_an_unwritable_output_dir_is_one_located_line(cli, tmp_path, monkeypatch):
    out = tmp_path / "locked" / "out"
    out.parent.mkdir()
    real = os.access
    monkeypatch.setattr("runner.run.outputdir.os.access", lambda p, m: Path(p) != out.parent and real(p, m))
    code, _, err = cli("run", str(TINY_SFT), "--set", f"output.dir={out}")
    assert code == 1 and "Traceback" not in err and "nothing was started" in err
    (line,) = [line for line in err.splitlines() if "output.dir" in line]
    assert f"error: output.dir: cannot write {out.parent}" in line and "writable" in line


def test_a_full_disk_is_one_line_naming_the_directory(cli, tmp_path, monkeypatch):
    def full(out, records):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))

    monkeypatch.setattr("runner.common.rundir._append", full)
    out = tmp_path / "out"
    code, _, err = cli("run", str(TINY_SFT), "--set", f"output.dir={out}")
    assert code == 1 and "Traceback" not in err
    assert f"error: output.dir: cannot write {out}: No space left on device; free space on its disk" in err


def test_a_lock_in_a_directory_that_cannot_be_created_is_one_line(tmp_path):
    from runner.common.lock import LockError, acquire

    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(LockError, match=r"output.dir: cannot write .*file/out/\.recipe-run\.lock: Not a directory"):
        acquire(tmp_path / "file" / "out", "recipe run test")
