"""`recipe data --check`: every row read and checked, each problem located by file and line (or split and row),
counted by kind; the policy (refuse or skip) and duplicates; what training then reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runner.data.cache import cache_dir, cached_check
from runner.data.check import check_recipe
from schemas import load

from conftest import HH_RLHF, ROOT

TINY_DPO = ROOT / "recipes/tiny/dpo-qlora.yaml"
TINY_SFT = ROOT / "recipes/tiny/sft-lora.yaml"


def pref(i: int) -> dict:
    return {"prompt": f"question {i}?", "chosen": f"a good answer {i}", "rejected": f"a poor answer {i}"}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def recipe(tmp_path: Path, data: str | bytes, *, fmt="preference", kind="jsonl", base=TINY_DPO, name="d.jsonl",
           **fields):  # fmt: skip
    """A tiny recipe training on `data` (written to `name`), with `datasets.FIELD` set from `fields`."""
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    source = {"source": f"{kind}:{path}", "format": fmt}
    source.update({k: fields.pop(k) for k in ("split", "limit", "columns") if k in fields})
    doc = {"extends": str(base), "datasets": {"train": [source], **fields}}
    file = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*')))}.yaml"
    file.write_text(yaml.safe_dump(doc))
    loaded = load(file)
    assert not loaded.errors, loaded.errors
    return loaded.recipe


def located(report, kind: str) -> list[str]:
    return [p.location for p in report.examples.get(kind, [])]


def test_a_clean_file_passes(tmp_path):
    report = check_recipe(recipe(tmp_path, jsonl(*(pref(i) for i in range(5)))))
    assert report.bad == 0 and not report.refused and report.split_rows["train"] == 5


@pytest.mark.parametrize(
    "line, kind",
    [
        ('{"prompt": "q", "chosen": "a", "rejected": "b"', "malformed-line"),
        ({"prompt": "q", "chosen": "a"}, "missing-field"),
        ({"prompt": "q", "chosen": "a", "rejected": None}, "missing-field"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "empty-value"),
        ({"prompt": "q", "chosen": "a", "rejected": " \n\t"}, "empty-value"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty-value"),
        ({"prompt": "q", "chosen": [], "rejected": "b"}, "empty-value"),
        ({"prompt": "q", "chosen": [{"role": "assistant", "content": ""}], "rejected": "b"}, "empty-value"),
        ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical-pair"),
        ({"prompt": "q", "chosen": 3, "rejected": "b"}, "wrong-type"),
        ({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "bad-roles"),
        ({"prompt": "q", "chosen": [{"role": "robot", "content": "a"}], "rejected": "b"}, "bad-roles"),
        (
            {
                "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "hm"}],
                "chosen": "a",
                "rejected": "b",
            },
            "last-turn",
        ),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "extra": 1} | {"chosen": {"x": 1}}, "wrong-type"),
        ("[1, 2]", "not-an-object"),
        ('"just a string"', "not-an-object"),
    ],
)
def test_each_kind_is_located_at_its_line(tmp_path, line, kind):
    rows = [pref(0), pref(1), line, pref(3)]
    report = check_recipe(recipe(tmp_path, jsonl(*rows)))
    assert dict(report.counts) == {kind: 1}, report.render()
    assert located(report, kind) == [f"{tmp_path / 'd.jsonl'}:3"]
    assert report.refused and report.split_rows["train"] == 3


def test_a_row_without_rejected_is_refused_not_filled(tmp_path):
    """The case that used to train: the missing value became an empty answer."""
    report = check_recipe(recipe(tmp_path, jsonl(pref(0), {"prompt": "q", "chosen": "a"})))
    (problem,) = report.examples["missing-field"]
    assert problem.location.endswith("d.jsonl:2") and "`rejected`" in problem.detail
    assert "datasets.bad_rows: skip" in report.problems()[0].message


def test_invalid_utf8_and_too_large_rows(tmp_path):
    data = jsonl(pref(0)).encode() + b'{"prompt": "q\xff", "chosen": "a", "rejected": "b"}\n'
    data += json.dumps({**pref(2), "chosen": "x" * 2000}).encode() + b"\n"
    report = check_recipe(recipe(tmp_path, data, max_row_bytes=1000))
    assert located(report, "invalid-utf8") == [f"{tmp_path / 'd.jsonl'}:2"]
    assert located(report, "too-large") == [f"{tmp_path / 'd.jsonl'}:3"]


def test_a_type_that_changes_between_rows(tmp_path):
    row = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}
    report = check_recipe(recipe(tmp_path, jsonl(pref(0), pref(1), row)))
    assert located(report, "inconsistent-type") == [f"{tmp_path / 'd.jsonl'}:3"]
    assert "a list here but a string" in report.examples["inconsistent-type"][0].detail


def test_bom_crlf_and_blank_lines_are_read_with_the_right_line_numbers(tmp_path):
    text = jsonl(pref(0), pref(1), {"prompt": "q", "chosen": "a"}).replace("\n", "\r\n")
    text = text.replace("\r\n", "\r\n\r\n", 1)  # a blank line after the first row
    report = check_recipe(recipe(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert report.split_rows["train"] == 2 and located(report, "missing-field") == [f"{tmp_path / 'd.jsonl'}:4"]


def test_an_empty_file_and_a_json_array_where_jsonl_is_expected(tmp_path):
    empty = check_recipe(recipe(tmp_path, b""))
    assert empty.refused and "is empty: it has no rows" in empty.unreadable[0]
    array = check_recipe(recipe(tmp_path, json.dumps([pref(0), pref(1)]) + "\n", name="a.jsonl"))
    (problem,) = array.examples["not-an-object"]
    assert problem.location == f"{tmp_path / 'a.jsonl'}:1" and "use the `json:` source kind" in problem.detail
    # the same array as a json source is two good rows, located by line
    pretty = "[\n" + ",\n".join(json.dumps(r) for r in (pref(0), {"prompt": "q", "chosen": "a"})) + "\n]\n"
    as_json = check_recipe(recipe(tmp_path, pretty, kind="json", name="a.json"))
    assert located(as_json, "missing-field") == [f"{tmp_path / 'a.json'}:3"] and as_json.split_rows["train"] == 1


def test_a_split_that_limit_and_a_slice_leave_empty(tmp_path):
    report = check_recipe(recipe(tmp_path, jsonl(pref(0), pref(1)), split="train[5:]", limit=1))
    assert report.refused and report.split_rows["train"] == 0
    assert any("datasets.train: no rows left to train on" in u for u in report.unreadable)
    limited = check_recipe(recipe(tmp_path, jsonl(pref(0), pref(1), {"x": 1}), limit=2))
    assert limited.bad == 0 and limited.split_rows["train"] == 2  # the bad third row is past the limit


def test_a_column_no_row_has_is_one_message_about_the_mapping(tmp_path):
    rows = [{"question": "q", "chosen": "a", "rejected": "b"}] * 3
    report = check_recipe(recipe(tmp_path, jsonl(*rows), columns={"prompt": "query"}))
    assert report.unreadable == [
        f"datasets.train.0 (jsonl:{tmp_path / 'd.jsonl'}): `columns` names 'query', which the data does not have; "
        "its columns: chosen, question, rejected"
    ] + [
        f"datasets.train.0 (jsonl:{tmp_path / 'd.jsonl'}): format 'preference' needs column prompt (after `columns`: "
        "{'prompt': 'query'}); the data has: chosen, question, rejected. Map yours with `columns: {prompt: "
        "your_column}`"
    ]
    rows = [{"good": "a", "bad": "b", "prompt": "q"}] * 3
    report = check_recipe(recipe(tmp_path, jsonl(*rows), columns={"chosen": "good"}))
    (message,) = report.unreadable
    assert "needs column rejected" in message and "the data has: bad, good, prompt" in message
    assert report.bad == 0  # not three row problems as well


def test_csv_text_parquet_and_save_to_disk_locations(tmp_path):
    csv_text = 'prompt,chosen,rejected\nq1,a,b\n"multi\nline q",a,b\nq3,,b\n'
    report = check_recipe(recipe(tmp_path, csv_text, kind="csv", name="d.csv"))
    assert located(report, "missing-field") == [f"{tmp_path / 'd.csv'}:5"] and report.split_rows["train"] == 2
    text = check_recipe(recipe(tmp_path, b"one\n\nthree\xff\n", kind="text", fmt="text", name="t.txt", base=TINY_SFT))
    assert located(text, "empty-value") == [f"{tmp_path / 't.txt'}:2"]
    assert located(text, "invalid-utf8") == [f"{tmp_path / 't.txt'}:3"]

    import datasets

    rows = [pref(0), {"prompt": "q", "chosen": "x", "rejected": "x"}, pref(2)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "p.parquet"))
    parquet = check_recipe(recipe(tmp_path, (tmp_path / "p.parquet").read_bytes(), kind="parquet", name="p.parquet"))
    assert located(parquet, "identical-pair") == [f"{tmp_path / 'p.parquet'} row 1"]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    doc = {"extends": str(TINY_DPO), "datasets": {"train": [{"source": f"local:{tmp_path / 'saved'}",
                                                             "format": "preference"}]}}  # fmt: skip
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(doc))
    saved = check_recipe(load(tmp_path / "saved.yaml").recipe)
    assert located(saved, "identical-pair") == [f"{tmp_path / 'saved'} split train row 1"]


def test_conversations_out_of_order_or_not_ending_with_the_assistant(tmp_path):
    def convo(*roles):
        return {"messages": [{"role": r, "content": f"{r} says"} for r in roles]}

    rows = [
        convo("system", "user", "assistant"),
        convo("user", "assistant", "user"),  # 2: ends with the user
        convo("assistant", "user", "assistant"),  # 3: starts with the assistant
        convo("user", "user", "assistant"),  # 4: two user turns in a row
        convo("user", "system", "assistant"),  # 5: system in the middle
    ]
    report = check_recipe(recipe(tmp_path, jsonl(*rows), fmt="messages", base=TINY_SFT))
    path = tmp_path / "d.jsonl"
    assert located(report, "last-turn") == [f"{path}:2"]
    assert located(report, "bad-roles") == [f"{path}:3", f"{path}:4", f"{path}:5"]


def test_duplicates_counted_and_dropped_and_eval_rows_seen_in_train(tmp_path):
    rows = [pref(0), pref(1), pref(0), pref(2), pref(0)]
    report = check_recipe(recipe(tmp_path, jsonl(*rows)))
    assert report.duplicates["train"] == 2 and report.split_rows["train"] == 5
    assert report.duplicate_examples["train"][0] == f"{tmp_path / 'd.jsonl'}:3 repeats {tmp_path / 'd.jsonl'}:1"
    dropped = check_recipe(recipe(tmp_path, jsonl(*rows), duplicates="drop"))
    assert dropped.split_rows["train"] == 3


def test_skip_trains_on_exactly_the_rows_the_check_keeps(tmp_path):
    from runner.data.sources import load_splits

    rows = [pref(0), '{"broken', {"prompt": "q", "chosen": "a"}, pref(3), pref(0), pref(5)]
    r = recipe(tmp_path, jsonl(*rows), bad_rows="skip", duplicates="drop")
    report = check_recipe(r)
    assert (
        not report.refused
        and report.bad == 2
        and report.to_json()["skipped"]
        == {
            "malformed-line": 1,
            "missing-field": 1,
        }
    )
    train, _ = load_splits(r)
    assert len(train) == report.split_rows["train"] == 3
    assert [row["prompt"][0]["content"] for row in train] == ["question 0?", "question 3?", "question 5?"]


def test_the_check_is_cached_until_the_data_or_the_recipe_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = recipe(tmp_path, jsonl(pref(0), pref(1)))
    first, hit = cached_check(r)
    assert not hit and first["split_rows"] == {"train": 2, "eval": 32}
    assert cached_check(r) == (first, True) and list(cache_dir().glob("*.json"))
    (tmp_path / "d.jsonl").write_text(jsonl(pref(0), pref(1), {"prompt": "q"}))
    changed, hit = cached_check(r)
    assert not hit and changed["bad"] == 1
    skip = r.model_copy(update={"datasets": r.datasets.model_copy(update={"bad_rows": "skip"})})
    assert cached_check(skip)[1] is False


def test_the_real_hh_rlhf_rows():
    """300 real rows of Anthropic's HH-RLHF (tests/fixtures/data): read in full, located, counted; fails if missing."""
    assert HH_RLHF.is_file(), f"{HH_RLHF} is missing"
    doc = {
        "extends": str(TINY_DPO),
        "datasets": {"train": [{"source": f"jsonl:{HH_RLHF}", "format": "hh-rlhf"}]},
    }
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "hh.yaml").write_text(yaml.safe_dump(doc))
        report = check_recipe(load(Path(tmp) / "hh.yaml").recipe)
    rows = [json.loads(line) for line in HH_RLHF.read_text(encoding="utf-8").splitlines()]
    assert report.sources[0].rows == len(rows) == 300

    def last_answer(dialogue: str) -> str:
        return dialogue.rsplit("\n\nAssistant:", 1)[-1]

    # counted independently of the presets: pairs with the same dialogue, pairs with an empty last answer
    identical = {i for i, r in enumerate(rows) if r["chosen"] == r["rejected"]}
    empty = {
        i for i, r in enumerate(rows) if i not in identical and not (last_answer(r["chosen"]).strip() and
                                                                     last_answer(r["rejected"]).strip())
    }  # fmt: skip
    assert report.counts.get("identical-pair", 0) == len(identical)
    assert report.counts.get("empty-value", 0) == len(empty)
    assert report.bad == len(identical) + len(empty) and report.split_rows["train"] == 300 - report.bad


def test_a_large_file_checked_in_parallel_parts_reports_what_one_pass_does(tmp_path, monkeypatch):
    import runner.data.check as check

    rows = []
    for i in range(400):
        row = pref(i % 150)  # duplicates across the parts
        if i % 37 == 5:
            row = {"prompt": "q", "chosen": f"a{i}"}
        if i == 301:  # a later part meets a list first: compared with the first part's string
            row = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}
        rows.append(row)
    r = recipe(tmp_path, jsonl(*rows[:150], "{broken", *rows[150:]))
    monkeypatch.setattr(check.os, "cpu_count", lambda: 4)
    one_pass = check_recipe(r).to_json()
    monkeypatch.setattr(check, "PARALLEL_BYTES", 1)
    parts = check._spans(tmp_path / "d.jsonl", 4)
    assert len(parts) == 4 and parts[1][2] > 1  # four parts, each knowing its first line number
    parallel = check_recipe(r).to_json()
    assert parallel == one_pass
    missing = sum(1 for i in range(400) if i % 37 == 5 and i != 301)
    assert one_pass["counts"] == {"missing-field": missing, "malformed-line": 1, "inconsistent-type": 1}
    assert one_pass["examples"]["inconsistent-type"][0]["location"] == f"{tmp_path / 'd.jsonl'}:303"
    assert one_pass["duplicates"]["train"] > 200
