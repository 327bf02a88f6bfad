"""Property tests: generated malformed recipes give located errors and never a traceback."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import load

from conftest import EXAMPLE_FILE, example

EXAMPLE_TEXT = EXAMPLE_FILE.read_text()
REQUIRED = [
    ("version",),
    ("name",),
    ("model",),
    ("model", "name_or_path"),
    ("adapter",),
    ("adapter", "kind"),
    ("objective",),
    ("objective", "kind"),
    ("datasets",),
    ("datasets", "train"),
    ("datasets", "train", 0, "source"),
    ("datasets", "train", 0, "format"),
    ("training",),
    ("training", "learning_rate"),
    ("training", "global_batch_size"),
    ("hardware",),
]


def paths(node, prefix=()):
    """Every path in the data, with whether it is a mapping."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


BASE = example()
MAPPINGS = [p for p, n in paths(BASE) if isinstance(n, dict)]
NON_STRING_LEAVES = [p for p, n in paths(BASE) if not isinstance(n, (dict, list, str))]
LEAVES = [p for p, n in paths(BASE) if not isinstance(n, (dict, list))]


def get(data, path):
    """The node at `path`, or None when an earlier mutation removed or replaced it."""
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def malformed(draw):
    data = copy.deepcopy(BASE)
    n = draw(st.integers(1, 4))
    for _ in range(n):
        mutation = draw(st.sampled_from(["unknown-key", "wrong-type", "delete-required", "bad-number"]))
        if mutation == "unknown-key":
            where = draw(st.sampled_from(MAPPINGS))
            key = "zz_" + draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
            target = get(data, where)
            if isinstance(target, dict):
                target[key] = draw(values)
        elif mutation == "wrong-type":
            where = draw(st.sampled_from(LEAVES))
            parent = get(data, where[:-1])
            if isinstance(parent, (dict, list)) and get(data, where) is not None:
                parent[where[-1]] = {"nested": draw(st.lists(scalars, max_size=2))}
        elif mutation == "delete-required":
            where = draw(st.sampled_from(REQUIRED))
            parent = get(data, where[:-1])
            if isinstance(parent, dict):
                parent.pop(where[-1], None)
        else:
            where = draw(st.sampled_from(NON_STRING_LEAVES))
            parent = get(data, where[:-1])
            if isinstance(parent, (dict, list)) and get(data, where) is not None:
                parent[where[-1]] = draw(st.sampled_from(["lots", "", "1e", "[", "NaN?"]))
    # and one that certainly breaks it, wherever the others landed
    data["zz_" + draw(st.text("abc", min_size=1, max_size=4))] = draw(values)
    return data


def check_located(text: str, must_fail: bool = True):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        loaded = load(path)  # must not raise
    if must_fail:
        assert loaded.errors, text
    for d in loaded.diagnostics:
        assert d.location.file == str(path)
        assert d.location.line is not None and d.location.line >= 1, d
        assert d.location.column is not None and d.location.column >= 1, d
        assert d.message and "Traceback" not in d.message
        assert d.rule
        assert d.text().startswith(f"{path}:{d.location.line}:{d.location.column}: ")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_structurally_malformed_recipes_give_located_errors(data):
    check_located(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=6) | values)
def test_arbitrary_yaml_documents_give_located_errors(doc):
    check_located(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(EXAMPLE_TEXT)), st.text(alphabet=":-[]{}&*!|>'\"%@` \n\t#,?abc1", min_size=1, max_size=6))
def test_text_corruption_never_raises(position, junk):
    text = EXAMPLE_TEXT[:position] + junk + EXAMPLE_TEXT[position:]
    check_located(text, must_fail=False)
