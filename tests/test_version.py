"""`recipe --version`: the package's version and each training library's installed version, marked where it is not
the tested one (constraints.txt)."""

from __future__ import annotations

from runner.cli.version import LIBRARIES, version_text
from runner.cli.version import tested_versions as read_lock

from conftest import ROOT, recipe_process


def test_version_prints_the_package_and_the_installed_training_libraries():
    proc = recipe_process("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("recipe 0.1.0 (Python ")
    listed = {line.split()[0]: line.split()[1] for line in lines[1:] if line.startswith("  ")}
    assert set(listed) == set(LIBRARIES)
    from runner.plan.probe import probe_packages

    installed = probe_packages()
    assert [listed[name] for name in LIBRARIES] == [installed[name] or "not" for name in LIBRARIES]
    assert "tested set:" in lines[-1] and "constraints.txt" in lines[-1]


def test_a_library_off_the_tested_set_is_marked(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# comment\ntransformers==5.24.0\ntorch==2.13.0\nbitsandbytes==0.50.2  # pinned\n")
    pins = read_lock(lock)
    assert pins == {"transformers": "5.24.0", "torch": "2.13.0", "bitsandbytes": "0.50.2"}
    installed = {"transformers": "5.25.0", "torch": "2.13.0+cpu", "bitsandbytes": None}
    text = version_text(installed, pins)
    assert "transformers  5.25.0  (tested: 5.24.0)" in text
    assert "torch         2.13.0+cpu\n" in text  # a local build label is the same release
    assert "bitsandbytes  not installed  (tested: 0.50.2)" in text


def test_the_lock_pins_every_training_library_the_version_lists():
    pins = read_lock(ROOT / "constraints.txt")
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed"):
        assert name in pins, f"constraints.txt: {name} is not pinned"
