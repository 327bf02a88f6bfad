"""`recipe plan`, `recipe run --dry-run/--slurm`, `recipe hardware`, and memory problems in `recipe validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import EXAMPLE_FILE, ROOT
from test_cli import BLOCKER

EXAMPLE = EXAMPLE_FILE.read_text()
PLAN_KEYS = {
    "recipe",
    "world_size",
    "precision",
    "attention",
    "trainer",
    "peft",
    "quantization",
    "deepspeed",
    "accelerate",
    "launch",
    "memory",
    "decisions",
}


def test_plan_json_has_the_documented_keys(cli):
    code, out, _ = cli("plan", str(EXAMPLE_FILE), "--json")
    plan = json.loads(out)
    assert code == 0 and PLAN_KEYS <= set(plan)
    assert set(plan["trainer"]) == {"class", "config_class", "args"} and plan["trainer"]["class"] == "trl.DPOTrainer"
    assert set(plan["peft"]) == {"class", "args"} and set(plan["quantization"]) == {"class", "args"}
    assert {"per_gpu_gb", "available_gb", "breakdown"} <= set(plan["memory"])
    assert all(set(d) == {"what", "value", "why"} for d in plan["decisions"])
    assert plan["recipe"]["training"]["micro_batch_size"] == 2 and plan["recipe"]["hardware"]["zero"] == "none"


def test_plan_text_shows_decisions_memory_bar_and_command(cli):
    code, out, _ = cli("plan", str(EXAMPLE_FILE))
    assert code == 0
    assert "decisions" in out and "gradient_accumulation_steps  4" in out
    assert "memory per GPU (estimate):" in out and "of 23.5 GiB" in out and "[####" in out
    assert "accelerate launch --config_file outputs/llama3-8b-dpo-qlora/launch/accelerate.yaml" in out


def test_plan_with_set_and_invalid_recipe(cli, write):
    code, out, _ = cli(
        "plan", str(EXAMPLE_FILE), "--set", "hardware.gpus_per_node=4", "--set", "hardware.zero=2", "--json"
    )
    plan = json.loads(out)
    assert code == 0 and plan["world_size"] == 4 and plan["deepspeed"]["zero_optimization"]["stage"] == 2
    code, out, err = cli("plan", str(write("bad.yaml", EXAMPLE.replace("r: 16", "r: x"))))
    assert code == 1 and out == "" and "adapter.r" in err


def test_validate_reports_a_plan_that_does_not_fit(cli, write):
    start, end = EXAMPLE.index("adapter:"), EXAMPLE.index("objective:")
    text = (EXAMPLE[:start] + "adapter:\n  kind: full\n" + EXAMPLE[end:]).replace("method: bnb-4bit", "method: none")
    path = write("huge.yaml", text)
    code, out, _ = cli("validate", str(path), "--format", "json")
    (diag,) = json.loads(out)
    assert code == 1 and diag["rule"] == "memory-fit" and diag["field"] == "hardware.profile"
    assert diag["line"] == next(i for i, line in enumerate(text.splitlines(), 1) if "profile: rtx4090-24gb" in line)
    assert "GiB" in diag["message"] and "Try:" in diag["message"]


def test_run_dry_run_writes_the_launch_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(
        "run", str(EXAMPLE_FILE), "--dry-run", "--set", "hardware.gpus_per_node=2", "--set", "hardware.zero=3"
    )
    assert code == 0
    launch = tmp_path / "outputs/llama3-8b-dpo-qlora/launch"
    assert {p.name for p in launch.iterdir()} == {
        "recipe.resolved.yaml",
        "plan.json",
        "ds_config.json",
        "accelerate.yaml",
        "launch.sh",
    }
    assert (
        out.strip() == "accelerate launch --config_file outputs/llama3-8b-dpo-qlora/launch/accelerate.yaml --quiet -m "
        "runner.run.train outputs/llama3-8b-dpo-qlora/launch/plan.json"
    )
    assert os.access(launch / "launch.sh", os.X_OK)
    ds = json.loads((launch / "ds_config.json").read_text())
    assert (
        ds["zero_optimization"]["stage"] == 3
        and ds["train_micro_batch_size_per_gpu"] == 2
        and ds["gradient_accumulation_steps"] == 2
    )
    acc = yaml.safe_load((launch / "accelerate.yaml").read_text())
    assert acc["deepspeed_config"]["deepspeed_config_file"] == "outputs/llama3-8b-dpo-qlora/launch/ds_config.json"


def test_resolved_recipe_replans_to_the_same_plan(cli, tmp_path, monkeypatch):
    """What runs is what `recipe plan` showed: the resolved file validates and resolves to the same plan."""
    monkeypatch.chdir(tmp_path)
    assert cli("run", str(EXAMPLE_FILE), "--dry-run")[0] == 0
    launch = tmp_path / "outputs/llama3-8b-dpo-qlora/launch"
    first = json.loads((launch / "plan.json").read_text())
    code, out, err = cli("plan", str(launch / "recipe.resolved.yaml"), "--json")
    assert code == 0, err
    again = json.loads(out)
    for key in (
        "trainer",
        "peft",
        "quantization",
        "deepspeed",
        "accelerate",
        "launch",
        "memory",
        "world_size",
        "precision",
        "attention",
    ):
        assert again[key] == first[key], key


def test_run_slurm_writes_sbatch(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(
        "run",
        str(EXAMPLE_FILE),
        "--slurm",
        "--set",
        "hardware.nodes=2",
        "--set",
        "hardware.gpus_per_node=8",
        "--set",
        "training.global_batch_size=32",
    )
    assert code == 0 and out.strip() == "sbatch outputs/llama3-8b-dpo-qlora/launch/slurm.sbatch"
    script = (tmp_path / "outputs/llama3-8b-dpo-qlora/launch/slurm.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "$SLURM_NODEID" in script and "--num_machines 2" in script


def test_run_refuses_before_launching_when_data_cannot_be_read(cli, tmp_path, monkeypatch):
    """The contract recipe names a Hub dataset; offline, the preflight says so and nothing is started."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    code, _, err = cli("run", str(EXAMPLE_FILE))
    assert code == 1
    assert "datasets.train.0 (hf:Anthropic/hh-rlhf): cannot read the dataset" in err
    assert "nothing was started" in err and not (tmp_path / "outputs").exists()


def test_hardware_lists_profiles(cli):
    code, out, _ = cli("hardware")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["PROFILE", "GPU"]
    assert any(line.startswith("h100-80gb") for line in out.splitlines())


def test_hardware_detect_prints_a_usable_profile(cli, write):
    code, out, _ = cli("hardware", "--detect")
    assert code == 0
    profile = yaml.safe_load(out)
    inline = {k: v for k, v in profile.items() if k != "description"}
    text = EXAMPLE.replace(
        "  profile: rtx4090-24gb      # a shipped profile name; fields may also be given inline\n",
        "".join(f"  {k}: {json.dumps(v)}\n" for k, v in inline.items()),
    )
    from schemas import load

    loaded = load(write("detected.yaml", text))
    assert loaded.recipe is not None, [d.text() for d in loaded.diagnostics]
    assert loaded.recipe.hardware.resolved_profile().accelerator == profile["accelerator"]


@pytest.mark.parametrize(
    "argv",
    [["plan", "recipes/llama3-dpo-qlora.yaml"], ["plan", "recipes/llama3-dpo-qlora.yaml", "--json"], ["hardware"]],
)
def test_plan_imports_no_training_libraries(argv):
    proc = subprocess.run([sys.executable, "-c", BLOCKER, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_dry_run_imports_no_training_libraries(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "run", str(EXAMPLE_FILE), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "outputs/llama3-8b-dpo-qlora/launch/launch.sh").exists()


def test_hardware_detect_reads_nvidia_smi(cli, tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 9.0'\necho 'NVIDIA H100 80GB HBM3, 81559, 9.0'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    code, out, _ = cli("hardware", "--detect")
    profile = yaml.safe_load(out)
    assert (
        code == 0
        and profile["accelerator"] == "cuda"
        and profile["compute_capability"] == 9.0
        and profile["bf16"] is True
    )
    assert 79 < profile["gpu_memory_gb"] < 80 and "2 × NVIDIA H100" in profile["description"]
    assert "# GPUs found: 2" in out


def test_overwrite_never_deletes_a_directory_that_is_not_a_run(tmp_path):
    from runner.run.preflight import check_output_dir
    from schemas import load

    keep = tmp_path / "my-project"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    recipe = load(EXAMPLE_FILE, [f"output.dir={keep}"]).recipe
    (problem,) = check_output_dir(recipe, overwrite=True, resume=False)
    assert (
        "would delete" in problem.message and problem.rule == "output-dir-not-a-run" and (keep / "notes.txt").exists()
    )
    (keep / "recipe.lock.yaml").write_text("recipe: {}\n")  # a run's file name alone does not make it a run
    (again,) = check_output_dir(recipe, overwrite=True, resume=False)
    assert again.rule == "output-dir-not-a-run" and "notes.txt" in again.message
    from runner.common import rundir

    (keep / "notes.txt").unlink()
    rundir.take(keep)
    rundir.record_created(keep, "recipe.lock.yaml")
    (finished,) = check_output_dir(recipe, overwrite=False, resume=False)
    assert "finished run" in finished.message and check_output_dir(recipe, overwrite=True, resume=False) == []


def test_multi_node_run_needs_the_rank_and_main_address_of_each_node(cli, tmp_path, monkeypatch):
    from runner.run.preflight import check_node_environment

    monkeypatch.chdir(ROOT)
    for name in ("MACHINE_RANK", "MAIN_PROCESS_IP"):
        monkeypatch.delenv(name, raising=False)
    sets = [
        "--set",
        f"output.dir={tmp_path / 'out'}",
        "--set",
        "hardware.nodes=2",
        "--set",
        "training.micro_batch_size=4",
    ]
    code, _, err = cli("run", str(ROOT / "recipes/tiny/sft-lora.yaml"), *sets)
    assert code == 1 and "set MACHINE_RANK and MAIN_PROCESS_IP on each node" in err and "nothing was started" in err
    assert not (tmp_path / "out").exists()
    assert check_node_environment(1, {}) == []
    assert check_node_environment(2, {"MACHINE_RANK": "1", "MAIN_PROCESS_IP": "10.0.0.1"}) == []
    (bad,) = check_node_environment(2, {"MACHINE_RANK": "2", "MAIN_PROCESS_IP": "10.0.0.1"})
    assert (
        bad.field == "hardware.nodes" and "MACHINE_RANK is '2'; set it to the rank of this node, 0 to 1" in bad.message
    )


def test_trackers_that_are_missing_or_cannot_log_are_refused_before_launch(tmp_path):
    from runner.run.preflight import check_trackers

    home = tmp_path / "home"
    home.mkdir()
    (missing,) = check_trackers(["tensorboard"], {}, {}, home)
    assert missing.field == "output.report_to"
    assert missing.message.startswith("tensorboard is not installed here: pip install tensorboard")
    assert check_trackers(["tensorboard", "none"], {"tensorboard": "2.21.0"}, {}, home) == []
    installed = {"wandb": "0.31.0"}
    (no_login,) = check_trackers(["wandb"], installed, {}, home)
    assert "wandb has no credentials here" in no_login.message and "WANDB_MODE=offline" in no_login.message
    assert check_trackers(["wandb"], installed, {"WANDB_MODE": "offline"}, home) == []
    assert check_trackers(["wandb"], installed, {"WANDB_API_KEY": "x"}, home) == []
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password key\n")
    assert check_trackers(["wandb"], installed, {}, home) == []
    (not_installed,) = check_trackers(["wandb"], {}, {}, home)
    assert "pip install wandb" in not_installed.message


def test_run_with_a_tracker_that_is_not_installed_starts_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    code, _, err = cli(
        "run",
        str(ROOT / "recipes/tiny/sft-lora.yaml"),
        "--set",
        f"output.dir={out}",
        "--set",
        "output.report_to=[mlflow]",
    )
    assert code == 1 and "mlflow is not installed here: pip install mlflow" in err and "nothing was started" in err
    assert not out.exists()


def test_a_local_model_path_that_does_not_exist_is_refused_before_launch(cli, tmp_path, monkeypatch):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        f"version: 1\nextends: {ROOT / 'recipes/tiny/sft-lora.yaml'}\nname: mine\n"
        "model: {name_or_path: ./models/missing}\n"
    )
    monkeypatch.chdir(ROOT)  # another directory than the recipe's: ./models/missing is relative to the recipe
    code, _, err = cli("run", str(recipe), "--set", f"output.dir={tmp_path / 'out'}")
    assert code == 1 and f"model.name_or_path: {tmp_path / 'models' / 'missing'} does not exist" in err
    assert "nothing was started" in err and not (tmp_path / "out").exists()


def test_the_closing_summary_says_where_the_result_is_or_what_failed(tmp_path):
    import json as _json

    from runner.plan import resolve
    from runner.run.summary import summary
    from schemas import load

    out = tmp_path / "out"
    plan = resolve(load(ROOT / "recipes/tiny/sft-lora.yaml", [f"output.dir={out}"]).recipe, {})
    failed = summary(plan, "r.yaml", 1, 12)
    assert "failed after 12 s, while loading the model and data" in failed and "exit code 1" in failed
    out.mkdir()
    (out / "metrics.jsonl").write_text(_json.dumps({"step": 5, "loss": 1.25}) + "\n")
    assert "while training" in summary(plan, "r.yaml", 1, 90)
    (out / "checkpoint-5").mkdir()  # a save cut short: no completeness marker
    assert "no complete checkpoint was saved" in summary(plan, "r.yaml", 143, 30)
    from runner.run.checkpoints import write_marker

    write_marker(out / "checkpoint-5", 5)
    assert "the last complete checkpoint is" in summary(plan, "r.yaml", 143, 30) and "--resume" in summary(
        plan, "r.yaml", 143, 30
    )
    (out / "recipe.lock.yaml").write_text("recipe: {}\n")
    (out / "adapter_config.json").write_text("{}")
    done = summary(plan, "r.yaml", 0, 75)
    assert done.startswith(f"finished in 1.2 min: the adapter is in {out}") and "last logged loss 1.25 (step 5)" in done
    assert f"recipe chat {out}" in done and f"recipe merge {out}" in done


def test_plan_measure_shows_a_measured_step_beside_the_estimate(cli):
    recipe = str(ROOT / "recipes" / "gpt2-hh-rlhf-dpo-lora.yaml")
    code, out, err = cli("plan", recipe, "--measure", "--json")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    measured = memory["measured"]
    assert measured["phase"] in ("forward", "backward", "optimizer step")
    assert set(measured["breakdown"]) == {"weights", "gradients", "optimizer_states", "activations", "temporaries"}
    # gpt2's 124 M weights in bf16, as the estimate counts them
    assert measured["breakdown"]["weights"] == pytest.approx(memory["breakdown"]["weights"], rel=0.01)
    estimate = memory["per_gpu_gb"] - memory["breakdown"]["runtime_overhead"]
    assert abs(estimate / measured["peak_gb"] - 1) < 0.10
    code, out, err = cli("plan", recipe, "--measure")
    assert code == 0 and "measured: one training step at full size with fake tensors" in out
    assert "total" in out.split("measured:")[1]


def test_plan_measure_refuses_what_it_cannot_run(cli):
    code, out, err = cli("plan", str(ROOT / "recipes" / "gpt2-triviaqa-rloo.yaml"), "--measure")
    assert code == 1 and "cannot measure this plan: online RL samples completions" in err
