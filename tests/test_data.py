"""Format presets and dataset sources: fixture files in each public format become TRL rows."""

from __future__ import annotations

import json

import pytest

from runner.data.formats import FormatError, convert, for_objective, parse_hh_dialogue
from runner.data.sources import DataError, Where, check_columns, load_raw, load_split
from schemas import Recipe
from schemas.datasets import DatasetSource

from conftest import HH_RLHF, ROOT, example, set_path

FIX = ROOT / "tests" / "fixtures" / "formats"
U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731

EXPECTED_FIRST = {
    "messages": {"messages": [{"role": "system", "content": "Be brief."}, U("Capital of France?"), A("Paris.")]},
    "ultrachat": {"messages": [U("How do plants grow?"), A("With light, water and nutrients.")]},
    "sharegpt": {"messages": [{"role": "system", "content": "You help."}, U("Hi"), A("Hello!")]},
    "lima": {
        "messages": [U("What is LIMA?"), A("Less Is More for Alignment."), U("Who made it?"), A("Meta AI and others.")]
    },
    "alpaca": {"prompt": [U("Translate to French.\n\ncat")], "completion": [A("chat")]},
    "alpaca-preference": {
        "prompt": [U("Translate to French.\n\ndog")],
        "chosen": [A("chien")],
        "rejected": [A("perro")],
    },
    "sharegpt-preference": {
        "prompt": [{"role": "system", "content": "Be brief."}, U("Capital of Spain?")],
        "chosen": [A("Madrid.")],
        "rejected": [A("Lisbon.")],
    },
    "triviaqa": {"prompt": [U("Which planet is known as the Red Planet?")], "completion": [A("Mars")]},
    "prompt-completion": {"prompt": [U("The sky is")], "completion": [A(" blue.")]},
    "preference": {"prompt": [U("Best pet?")], "chosen": [A("A dog.")], "rejected": [A("A rock.")]},
    "ultrafeedback": {"prompt": [U("Write a haiku.")], "chosen": [A("Leaves fall in silence")], "rejected": [A("No.")]},
    "hh-rlhf": {
        "prompt": [U("How do I bake bread?")],
        "chosen": [A("Mix flour, water, yeast and salt, then bake.")],
        "rejected": [A("Buy it.")],
    },
    "unpaired-preference": {"prompt": [U("Capital of Italy?")], "completion": [A("Rome.")], "label": True},
    "prompt-only": {"prompt": [U("Write a limerick about cats.")]},
}


def source(fmt: str, file: str | None = None, **kw) -> DatasetSource:
    name = file or f"{fmt}.jsonl"
    kind = "text" if name.endswith(".txt") else "jsonl"
    return DatasetSource.model_validate({"source": f"{kind}:{FIX / name}", "format": fmt, **kw})


@pytest.mark.parametrize("fmt", sorted(EXPECTED_FIRST))
def test_every_preset_on_its_public_format(fmt):
    entry = source(fmt)
    ds = load_raw(entry, Where("train", 0, entry.source))
    check_columns(entry, ds, Where("train", 0, entry.source))
    assert convert(fmt, ds[0]) == EXPECTED_FIRST[fmt]
    for row in ds:
        convert(fmt, row)


def test_text_preset_on_a_text_file():
    entry = source("text", "text.txt")
    ds = load_raw(entry, Where("train", 0, entry.source))
    assert [convert("text", r) for r in ds] == [
        {"text": "The first line of raw text."},
        {"text": "The second line of raw text."},
    ]


def test_preference_without_prompt_splits_the_shared_turns():
    entry = source("preference", "preference-messages.jsonl")
    row = load_raw(entry, Where("train", 0, entry.source))[0]
    assert convert("preference", row) == {
        "prompt": [{"role": "system", "content": "Be kind."}, U("Hi")],
        "chosen": [A("Hello, friend!")],
        "rejected": [A("Go away.")],
    }


def test_preference_answers_may_be_single_turn_mappings():
    row = {"prompt": [U("Best pet?")], "chosen": A("A dog."), "rejected": {"role": "assistant", "content": "A rock."}}
    assert convert("preference", row) == EXPECTED_FIRST["preference"]
    rows = [json.loads(line) for line in (FIX / "sharegpt-preference.jsonl").read_text().splitlines()]
    assert convert("sharegpt-preference", {**rows[1], "rejected": "7."}) == {
        "prompt": [U("2+2?"), A("4."), U("Times 3?")],
        "chosen": [A("12.")],
        "rejected": [A("7.")],
    }
    with pytest.raises(FormatError, match="chosen"):
        convert("sharegpt-preference", {**rows[0], "chosen": {"from": "human", "value": "Madrid."}})


def test_hh_rlhf_multi_turn_keeps_the_dialogue_as_prompt():
    rows = [json.loads(line) for line in (FIX / "hh-rlhf.jsonl").read_text().splitlines()]
    out = convert("hh-rlhf", rows[1])
    assert out["prompt"] == [U("Hi"), A("Hello!"), U("Tell me a joke")]
    assert out["chosen"] == [A("Why did the chicken cross the road?")] and out["rejected"] == [A("No.")]


def test_hh_rlhf_on_the_real_rows():
    """The 300 real rows convert, except line 87, whose chosen answer is empty: refused, not trained on as ''."""
    path = HH_RLHF
    assert path.is_file(), f"{path} is missing"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 300
    for number, row in enumerate(rows, 1):
        if number == 87:
            assert row["chosen"].endswith("\n\nAssistant: ")
            with pytest.raises(FormatError, match="empty") as refused:
                convert("hh-rlhf", row)
            assert refused.value.kind == "empty-value"
            continue
        out = convert("hh-rlhf", row)
        assert out["prompt"][-1]["role"] == "user" and len(out["chosen"]) == len(out["rejected"]) == 1


def test_columns_rename_to_canonical_names():
    entry = source(
        "preference", "custom-columns.jsonl", columns={"prompt": "question", "chosen": "good", "rejected": "bad"}
    )
    ds = load_raw(entry, Where("train", 0, entry.source))
    assert convert("preference", ds[0]) == EXPECTED_FIRST["preference"]


def test_missing_column_names_the_dataset_and_its_columns():
    entry = source("preference", "custom-columns.jsonl")
    where = Where("train", 2, entry.source)
    with pytest.raises(DataError) as exc:
        check_columns(entry, load_raw(entry, where), where)
    msg = str(exc.value)
    assert (
        msg.startswith("datasets.train.2 (jsonl:") and "chosen, rejected" in msg and "question, good, bad, extra" in msg
    )
    assert "columns: {chosen: your_column}" in msg


def test_columns_naming_an_absent_file_column():
    entry = source("preference", "custom-columns.jsonl", columns={"chosen": "best"})
    with pytest.raises(DataError, match="'best', which the data does not have"):
        load_raw(entry, Where("train", 0, entry.source))


def test_wrong_shape_row_is_reported_with_its_index():
    entry = source("sharegpt", "messages.jsonl", columns={"conversations": "messages"})
    where = Where("eval", 0, entry.source)
    with pytest.raises(DataError, match=r"row 0: `conversations\[0\]` should be a \{from, value\} mapping"):
        check_columns(entry, load_raw(entry, where), where)


def test_bad_rows_raise_format_errors():
    with pytest.raises(FormatError):
        convert("lima", {"conversations": "not a list"})
    with pytest.raises(FormatError):
        convert("unpaired-preference", {"prompt": "p", "completion": "c", "label": "maybe"})
    with pytest.raises(FormatError):
        parse_hh_dialogue("no markers here")
    with pytest.raises(FormatError, match="no `prompt` column"):
        convert("preference", {"chosen": "yes", "rejected": "no"})


def test_kto_unpairs_preference_and_online_rl_keeps_prompts():
    record = EXPECTED_FIRST["hh-rlhf"]
    rows = list(for_objective(record, "kto"))
    assert [r["label"] for r in rows] == [True, False] and rows[0]["completion"] == record["chosen"]
    assert list(for_objective(EXPECTED_FIRST["triviaqa"], "grpo")) == [{"prompt": EXPECTED_FIRST["triviaqa"]["prompt"]}]


def _recipe(train: list[dict], **changes) -> Recipe:
    data = example()
    data["datasets"] = {"train": train}
    data["training"]["eval_every"] = None
    for k, v in changes.items():
        set_path(data, k, v)
    return Recipe.model_validate(data)


def test_limit_mixture_by_samples_and_eval_fraction():
    hh = {"source": f"jsonl:{FIX / 'hh-rlhf.jsonl'}", "format": "hh-rlhf"}
    pref = {"source": f"jsonl:{FIX / 'preference.jsonl'}", "format": "preference"}
    r = _recipe([{**hh, "samples": 5}, {**pref, "samples": 3}])
    train = load_split(r, "train")
    assert len(train) == 8 and load_split(r, "eval") is None
    r = _recipe([{**hh, "limit": 1}])
    assert len(load_split(r, "train")) == 1
    big = {"source": f"jsonl:{FIX / 'hh-rlhf.jsonl'}", "format": "hh-rlhf", "samples": 40}
    r = _recipe([big], **{"datasets.eval_fraction": 0.25})
    assert (len(load_split(r, "train")), len(load_split(r, "eval"))) == (30, 10)


def test_mixture_by_weight_sets_shares():
    hh = {"source": f"jsonl:{FIX / 'hh-rlhf.jsonl'}", "format": "hh-rlhf", "weight": 3.0}
    pref = {"source": f"jsonl:{FIX / 'preference.jsonl'}", "format": "preference", "weight": 1.0}
    rows = load_split(_recipe([hh, pref]), "train")
    from_pref = sum(r["chosen"] == [A("A dog.")] for r in rows)
    assert len(rows) == 3 and from_pref == 1  # 3 rows in all: shares 3:1 of 3 rows round to 2 and 1


def test_kto_from_preference_doubles_rows():
    hh = {"source": f"jsonl:{FIX / 'hh-rlhf.jsonl'}", "format": "hh-rlhf"}
    r = _recipe([hh], objective={"kind": "kto"})
    rows = load_split(r, "train")
    assert len(rows) == 4 and sorted(rows["label"]) == [False, False, True, True]


def test_local_save_to_disk_and_csv_and_parquet(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"instruction": "Say yes", "input": "", "output": "yes"}] * 3)
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "saved"))
    ds.to_csv(str(tmp_path / "a.csv"))
    ds.to_parquet(str(tmp_path / "a.parquet"))
    for src, split, n in (
        (f"local:{tmp_path / 'saved'}", "test", 1),
        (f"local:{tmp_path / 'saved'}", "train[:2]", 2),
        (f"csv:{tmp_path / 'a.csv'}", "train", 3),
        (f"parquet:{tmp_path / 'a.parquet'}", "train", 3),
    ):
        entry = DatasetSource.model_validate({"source": src, "split": split, "format": "alpaca"})
        rows = load_raw(entry, Where("train", 0, src))
        assert len(rows) == n and convert("alpaca", rows[0])["completion"] == [A("yes")]


def test_missing_local_file_and_wrong_split():
    entry = DatasetSource.model_validate({"source": "jsonl:does/not/exist.jsonl", "format": "messages"})
    with pytest.raises(DataError, match="no such file"):
        load_raw(entry, Where("train", 0, entry.source))
    entry = source("messages", split="test")
    with pytest.raises(DataError, match="a local file is one split"):
        load_raw(entry, Where("train", 0, entry.source))


def test_exact_match_reward_reads_triviaqa_answers():
    from runner.run.rewards import exact_match

    answer = {"value": "Mars", "aliases": ["Mars", "The Red Planet"], "normalized_aliases": ["mars", "red planet"]}
    completions = ["Mars.", "the red planet\nbecause it is red", "Jupiter", [{"role": "assistant", "content": "MARS"}]]
    assert exact_match(completions, answer=[answer] * 4) == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="needs an `answer` column"):
        exact_match(["Mars"])


def test_reward_functions_by_name_module_and_file(tmp_path):
    from runner.run.rewards import exact_match
    from runner.run.trainer import reward_function

    assert reward_function("exact_match") is exact_match
    assert reward_function("runner.run.rewards:length_penalty").__name__ == "length_penalty"
    (tmp_path / "mine.py").write_text("def score(completions, **kw):\n    return [2.0 for _ in completions]\n")
    assert reward_function(f"{tmp_path / 'mine.py'}:score")(["a", "b"]) == [2.0, 2.0]
