"""End to end on the tiny model, through `recipe run` and `accelerate launch`, on the CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import RECIPE, ROOT, SECRET
from conftest import recipe_process as run

pytestmark = pytest.mark.e2e


def evals(out: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


def test_tiny_sft_lora_learns_from_any_directory(tmp_path, trained_runs):
    """Started from a directory that is not the repository: the recipe's paths are relative to the recipe file.
    The finished run is then used from a third directory, with nothing but its output directory."""
    # the shared run (conftest.TRAINED): from another directory, logging to TensorBoard as the shipped recipes do
    out, proc = trained_runs("sft-lora")
    third = tmp_path / "third"
    third.mkdir()
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard event file was written"
    losses = evals(out, "eval_loss")
    assert len(losses) >= 3
    assert losses[-1] < 0.9 * losses[0], losses  # held-out loss falls clearly
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    lock = yaml.safe_load((out / "recipe.lock.yaml").read_text())
    assert lock["recipe"]["model"]["name_or_path"] == str(ROOT / "assets" / "tiny-llama")
    (train, held_out) = lock["data_files"]
    assert train["path"] == str(ROOT / "assets/data/messages-train.jsonl") and train["hash"].startswith("sha256:")
    assert train["size"] == (ROOT / "assets/data/messages-train.jsonl").stat().st_size
    chat = run("chat", str(out), "--prompt", "What color is the lemon?", "--temperature", "0", cwd=third)
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-2000:]


def test_tiny_dpo_qlora_learns_and_leaves_a_complete_run(trained_runs):
    """What must hold on any machine with the recipe's seed (the figures themselves depend on the CPU's arithmetic:
    docs/cookbook.md shows one machine's, and the command that printed them)."""
    out, proc = trained_runs("dpo-qlora")  # with HF_TOKEN and WANDB_API_KEY set (conftest.TRAINED)
    losses = evals(out, "loss")
    assert losses[-1] < losses[0], losses  # the DPO loss falls
    accuracy = evals(out, "eval_rewards/accuracies")
    assert accuracy[0] <= 0.75 and accuracy[-1] >= 0.9, accuracy  # from about chance to well above, on held-out pairs
    # the live view: every log as a line, and the progress row with throughput and the DPO metrics
    assert "step 5: loss" in proc.stderr and "rewards/accuracies" in proc.stderr and "steps/s" in proc.stderr
    # the closing summary: where the adapter is, its numbers, what to do next
    assert f"the adapter is in {out}" in proc.stderr and "eval loss" in proc.stderr
    assert f"recipe chat {out}" in proc.stderr and f"recipe merge {out}" in proc.stderr
    # evaluated at its end (evaluation.at_end), before and after: the held-out pairs through `recipe eval`'s own
    # forward pass; with the base as the reference, DPO's implicit reward margin is the one TRL's trainer logged
    results = json.loads((out / "eval" / "results.json").read_text())["models"]
    trained = results["trained"]["tasks"]["held-out-pairs"]["metrics"]
    base = results["base"]["tasks"]["held-out-pairs"]["metrics"]
    assert trained["reward_accuracy"] >= 0.9, trained
    assert trained["reward_margin"] == pytest.approx(evals(out, "eval_rewards/margins")[-1], rel=0.02)
    # DPO raises the chosen answer's log-likelihood over the rejected one's relative to the reference (the base):
    # a positive reward margin is exactly a larger mean log-likelihood margin than the base's. The share of pairs
    # the model prefers in absolute terms rises too, by an amount that depends on the machine's arithmetic.
    assert trained["reward_margin"] > 0 and trained["margin"] > base["margin"], (trained, base)
    assert trained["accuracy"] > base["accuracy"] + 0.05, (trained, base)
    assert "evaluation: held-out-pairs reward_accuracy" in proc.stderr and "CHANGE" in proc.stderr
    listed = run("runs", str(out.parent))
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:2] == ["finished", "tiny-dpo-qlora"]
    assert (out / "curves.png").is_file() and f"curves: {out / 'curves.png'}" in proc.stderr  # drawn at the end
    assert "eval_loss" in run("runs", str(out)).stdout  # its curves
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 16
    lock = yaml.safe_load((out / "recipe.lock.yaml").read_text())
    assert lock["recipe"]["quantization"]["method"] == "bnb-4bit" and lock["content_hash"].startswith("sha256:")
    assert {"torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "bitsandbytes", "datasets"} <= set(
        lock["versions"]
    )
    card = (out / "README.md").read_text()
    assert "assets/tiny-llama" in card and "dpo" in card and "preference-train.jsonl" in card
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET.encode() not in path.read_bytes(), f"secret written to {path}"
    again = run("run", "recipes/tiny/dpo-qlora.yaml", "--set", f"output.dir={out}")
    assert again.returncode == 1 and "finished run" in again.stderr and "--overwrite" in again.stderr


def test_preflight_stops_before_launching(tmp_path):
    out = tmp_path / "nothing"
    proc = run(
        "run",
        "recipes/tiny/sft-lora.yaml",
        "--set",
        f"output.dir={out}",
        "--set",
        "datasets.train.0.source=jsonl:assets/data/missing.jsonl",
    )
    assert proc.returncode == 1
    # a --set path is relative to the current directory (the repository here), shown absolute
    assert f"datasets.train.0 (jsonl:{ROOT}/assets/data/missing.jsonl): no such file" in proc.stderr
    assert not out.exists()
    proc = run(
        "run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", "--set", "datasets.train.0.format=sharegpt"
    )
    assert (
        proc.returncode == 1 and "needs column conversations" in proc.stderr and "the data has: messages" in proc.stderr
    )
    # a run that evaluates at its end has its evaluation tasks checked before training
    proc = run(
        "run",
        "recipes/tiny/dpo-qlora.yaml",
        "--set", f"output.dir={out}",
        "--set", "evaluation.tasks.0.data.source=jsonl:assets/data/missing.jsonl",
    )  # fmt: skip
    assert proc.returncode == 1 and not out.exists()
    assert (
        f"evaluation.at_end: evaluation.tasks.0 (jsonl:{ROOT}/assets/data/missing.jsonl): no such file" in proc.stderr
    )


def test_tiny_reward_model_ranks_held_out_pairs(tmp_path):
    out = tmp_path / "reward"
    proc = run("run", "recipes/tiny/reward-lora.yaml", "--set", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy, margin = evals(out, "eval_accuracy"), evals(out, "eval_margin")
    # an untrained score head ranks by a random direction (its accuracy before training can be anything);
    # after training it ranks the held-out pairs well above chance, by a margin it did not have
    assert accuracy[-1] >= 0.9 and margin[-1] > margin[0] + 1.0, (accuracy, margin)


TINY = sorted(p.stem for p in (ROOT / "recipes" / "tiny").glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("name", [n for n in TINY if n not in ("sft-lora", "dpo-qlora", "reward-lora")])
def test_every_tiny_recipe_trains(tmp_path, name):
    """Each objective and adapter runs through `recipe run` for a few steps and leaves a complete output."""
    out = tmp_path / name
    proc = run("run", f"recipes/tiny/{name}.yaml", "--set", f"output.dir={out}", "--set", "training.max_steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(line).get("step") for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4
    weights = {"adapter_model.safetensors", "model.safetensors"} & {p.name for p in out.iterdir()}
    assert weights and (out / "recipe.lock.yaml").exists() and (out / "README.md").exists()


def test_tiny_recipes_cover_every_objective_and_adapter():
    from schemas import load

    recipes = [load(ROOT / "recipes" / "tiny" / f"{n}.yaml").recipe for n in TINY]
    assert {r.objective.kind for r in recipes} == {
        "sft",
        "pretrain",
        "dpo",
        "orpo",
        "kto",
        "simpo",
        "cpo",
        "reward",
        "grpo",
        "rloo",
    }
    adapters = {(r.adapter.kind, r.quantization.method) for r in recipes}
    assert {a for a, _ in adapters} == {"full", "lora", "dora", "prefix", "prompt", "p-tuning", "ia3"}
    assert ("lora", "bnb-4bit") in adapters and ("lora", "bnb-8bit") in adapters


def _final_step(out: Path) -> int:
    return max(json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines())


def test_sigterm_checkpoints_and_resume_reaches_the_same_final_step(tmp_path):
    import signal
    import time

    common = [
        "--set",
        "training.epochs=12",
        "--set",
        "training.save_every=4",
        "--set",
        "training.eval_every=null",
        "--set",
        "datasets.eval=[]",
    ]
    whole = tmp_path / "whole"
    assert run("run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={whole}", *common).returncode == 0

    out = tmp_path / "preempted"
    proc = subprocess.Popen(
        [RECIPE, "run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", *common],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-8").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends a preempted job
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, log[-2000:]
    assert "stopped by SIGTERM" in log and not (out / "recipe.lock.yaml").exists()
    last = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    stopped_at = int(last.name.split("-")[1])
    assert 8 <= stopped_at < _final_step(whole)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(ROOT / "assets" / "tiny-llama"), str(last)
    )  # loadable

    refused = run("run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", *common)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = run("run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _final_step(out) == _final_step(whole) and (out / "recipe.lock.yaml").exists()
    from safetensors.torch import load_file

    resumed_weights, whole_weights = (load_file(d / "adapter_model.safetensors") for d in (out, whole))
    assert all(resumed_weights[k].equal(whole_weights[k]) for k in whole_weights)  # bit-identical


@pytest.mark.parametrize("zero", ["none", "2"])  # ZeRO-3: tests/test_distributed.py
def test_two_cpu_processes(tmp_path, zero):
    """Two processes on the CPU (gloo), plain data parallel and through the generated DeepSpeed ZeRO-2/3 JSON."""
    out = tmp_path / f"two-{zero}"
    proc = run(
        "run",
        "recipes/tiny/sft-lora.yaml",
        "--set",
        f"output.dir={out}",
        "--set",
        "hardware.gpus_per_node=2",
        "--set",
        f"hardware.zero={zero}",
        "--set",
        "training.micro_batch_size=4",
        "--set",
        "training.max_steps=6",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 128 training rows, 4 per process: with 2 processes an epoch is 16 steps, so 6 steps are 0.375 of it
    assert max(r["epoch"] for r in rows) == pytest.approx(0.375)
    assert proc.stderr.count("step 5: loss") == 1  # the live view is drawn by rank 0 only
    # library noise stays out of the terminal and goes, with everything else, to each process's log file
    for noise in ("is deprecated", "Setting accelerator to CPU", "OMP_NUM_THREADS", "examples/s]"):
        assert noise not in proc.stderr, noise
    logs = {p.name: p.read_text() for p in (out / "logs").glob("train-rank*.log")}
    assert set(logs) == {"train-rank0.log", "train-rank1.log"}
    assert "is_gradient_checkpointing" in logs["train-rank0.log"]
    if zero != "none":
        states = {p.name for p in (out / "checkpoint-6" / "global_step6").iterdir()}
        assert any(n.startswith("zero_pp_rank_0") for n in states), (
            states
        )  # DeepSpeed ZeRO wrote its partitioned states
    assert (out / "recipe.lock.yaml").exists()


def test_online_rl_scores_with_the_reward_model_a_reward_recipe_trained(tmp_path):
    """The catalogue's PPO replacement on the tiny model: a `reward` recipe, then GRPO against its output directory."""
    reward = tmp_path / "reward"
    assert (
        run(
            "run", "recipes/tiny/reward-lora.yaml", "--set", f"output.dir={reward}", "--set", "training.max_steps=10"
        ).returncode
        == 0
    )
    out = tmp_path / "grpo"
    proc = run(
        "run",
        "recipes/tiny/grpo-lora.yaml",
        "--set",
        f"output.dir={out}",
        "--set",
        "training.max_steps=4",
        "--set",
        "objective.reward_functions=[]",
        "--set",
        f"objective.reward_model={reward}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in r for r in logged) and max(r["step"] for r in logged) == 4


def test_dpo_with_a_weighted_mixture_of_losses(tmp_path):
    out = tmp_path / "mpo"
    proc = run(
        "run",
        "recipes/tiny/dpo-qlora.yaml",
        "--set",
        f"output.dir={out}",
        "--set",
        "training.max_steps=4",
        "--set",
        "objective.loss=[sigmoid, sft]",
        "--set",
        "objective.loss_weights=[1.0, 0.5]",
        "--set",
        "evaluation.at_end=false",  # the losses are the point here; test_tiny_dpo_qlora_learns... evaluates
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((out / "launch" / "plan.json").read_text())
    assert plan["trainer"]["args"]["loss_type"] == ["sigmoid", "sft"] and plan["trainer"]["args"]["loss_weights"] == [
        1.0,
        0.5,
    ]


def test_online_rl_reward_functions_receive_the_datasets_other_columns(tmp_path):
    """TriviaQA rows: the `answer` record reaches reward functions as a keyword argument, and exact_match scores it."""
    out, calls = tmp_path / "rloo", tmp_path / "calls.jsonl"
    proc = run(
        "run",
        "recipes/tiny/rloo-lora.yaml",
        "--set", f"output.dir={out}",
        "--set", "training.max_steps=1",
        "--set", "datasets.train=[{source: 'jsonl:tests/fixtures/formats/triviaqa-colors.jsonl', format: triviaqa}]",
        "--set", "objective.reward_functions=[exact_match, 'recording_reward:record']",
        "--trust-code",
        env={"PYTHONPATH": str(ROOT / "tests" / "fixtures" / "rewards"), "RECORDED_REWARD_CALLS": str(calls)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert recorded and all("answer" in r["keys"] and "question_id" in r["keys"] for r in recorded)
    values = {a["value"] for r in recorded for a in r["answer"]}
    assert values <= {"Yellow", "Blue", "Green", "Red"} and values
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(any("exact_match" in key for key in r) for r in logged)


def test_checkpoints_kept_are_the_last_two_and_the_best(tmp_path):
    out = tmp_path / "kept"
    proc = run(
        "run", "recipes/tiny/sft-lora.yaml",
        "--set", f"output.dir={out}",
        "--set", "training.max_steps=24",
        "--set", "training.save_every=4",
        "--set", "training.eval_every=4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    state = json.loads((out / f"checkpoint-{kept[-1]}" / "trainer_state.json").read_text())
    best = int(Path(state["best_model_checkpoint"]).name.split("-")[1])
    assert kept[-2:] == [20, 24] and set(kept) == {20, 24, best}, kept  # 6 were saved


def test_a_failed_run_ends_with_the_stage_the_error_and_the_log(tmp_path):
    """Weights that cannot be read: the training process fails while loading; the terminal gets the stage, the
    error and where the full traceback is, not a traceback."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ROOT / "assets/tiny-llama", model)
    (model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    out = tmp_path / "out"
    proc = run(
        "run", str(ROOT / "recipes/tiny/sft-lora.yaml"), "--set", f"output.dir={out}",
        "--set", f"model.name_or_path={model}",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    record = json.loads((out / "logs/failure-rank0.json").read_text())
    assert record["stage"] == "load" and record["where"], record
    log = out / "logs/train-rank0.log"
    assert record["log"] == str(log) and "Traceback (most recent call last)" in log.read_text()
    summary = proc.stderr[proc.stderr.index("the run failed") :]
    assert "while loading the model and data" in summary and record["error"] in summary, summary
    assert f"the full traceback is in {log}" in summary
    listed = run("runs", str(tmp_path))
    assert listed.stdout.splitlines()[1].split()[0] == "failed"


def test_bad_rows_refuse_a_run_before_launch_or_are_skipped_and_recorded(tmp_path):
    good = (ROOT / "assets/data/preference-train.jsonl").read_text().splitlines()
    bad = [*good[:40], '{"prompt": "q", "chosen": "a"}', *good[40:80], '{"broken', *good[80:]]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(bad) + "\n")
    out = tmp_path / "out"
    args = ["run", "recipes/tiny/dpo-qlora.yaml", "--set", f"output.dir={out}"]
    args += ["--set", f"datasets.train.0.source=jsonl:{data}", "--set", "training.max_steps=2"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    refused = run(*args, env=env)
    assert refused.returncode == 1 and not out.exists()
    assert "2 bad row(s) (1 missing-field, 1 malformed-line)" in refused.stderr
    assert f"{data}:41: `rejected` is missing" in refused.stderr and f"{data}:82:2: not valid JSON" in refused.stderr
    skipped = run(
        *args,
        "--set",
        "datasets.bad_rows=skip",
        "--set",
        "training.eval_every=null",
        "--set",
        "evaluation.at_end=false",
        env=env,
    )
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    record = json.loads((out / "data-check.json").read_text())
    assert record["skipped"] == {"missing-field": 1, "malformed-line": 1} and record["split_rows"]["train"] == 128
    assert f"skipping 2 bad row(s) (1 missing-field, 1 malformed-line); listed in {out / 'data-check.json'}" in (
        skipped.stderr
    )
