"""Fuzz the loader and the data check with mutated recipes and hostile data files; not a timed test.

    python benchmarks/fuzz_inputs.py [--recipes 1000] [--data 120] [--seed 0] [--timeout 10]

Mutates the shipped recipes (recipes/*.yaml, recipes/tiny/*.yaml): lines deleted, duplicated and swapped, random
bytes, deep nesting, huge numbers, wrong types, lone surrogates, NULs, bad `extends` targets (devices, a FIFO,
/proc, a directory, a large file, a cycle, a path outside the root) and hostile `--set` values; runs each through
`recipe validate` in this process. Then writes hostile data files (invalid UTF-8, lone surrogates, duplicate keys,
NULs, deep nesting, huge numbers, wrong types, over-long lines, garbage) and runs `recipe data RECIPE --check
--no-tokens --format json` on each. Counts, per phase: tracebacks (anything but a normal exit), unlocated messages
(an error line that does not start with a file path and line, or `--set`; a data finding not at its FILE:LINE) and
hangs (past --timeout seconds). Exit code 1 when any count is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOCATED = re.compile(r"^\S[^\n]*?:(\d+:\d+|--set): (error|warning): ")
SUMMARY = re.compile(r"^\d+ (of \d+ )?recipes? (valid|invalid)")
USAGE = re.compile(r"^recipe \w+: error: ")


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_cli(argv: list[str], timeout: float) -> tuple[str, int | None, str, str]:
    """(outcome, exit code, stdout, stderr): outcome is ok | traceback | hang."""
    from runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        return "ok", code, out.getvalue(), err.getvalue()
    except SystemExit as exc:  # argparse's usage errors
        return ("ok" if exc.code == 2 else "traceback"), exc.code, out.getvalue(), err.getvalue()
    except Hang:
        return "hang", None, out.getvalue(), err.getvalue()
    except BaseException:
        return "traceback", None, out.getvalue(), err.getvalue() + traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# --- recipes ---------------------------------------------------------------------------------------------------------


def hostile_targets(work: Path) -> list[str]:
    """`extends` targets that must be refused (or read safely)."""
    (work / "folder.yaml").mkdir(exist_ok=True)
    fifo = work / "pipe.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    zero = work / "zero.yaml"
    if not zero.exists():
        zero.symlink_to("/dev/zero")
    (work / "big.yaml").write_text("description: " + "x" * (2 << 20) + "\n")
    (work / "creds.yaml").write_text("aws_secret_access_key: AKIAEXAMPLE\n")
    (work / "broken.yaml").write_text("token: hunter2\nlist: [\n")
    return [
        "/etc/shadow",
        "/etc/passwd",
        "/proc/self/status",
        "/proc/self/environ",
        "/dev/zero",
        "/dev/urandom",
        "/dev/stdin",
        str(fifo),
        str(zero),
        str(work / "folder.yaml"),
        str(work / "big.yaml"),
        str(work / "creds.yaml"),
        str(work / "broken.yaml"),
        "nowhere.yaml",
        "../../../../etc/passwd.yaml",
        "/",
        "",
        "self.yaml",
    ]


def _value() -> str:
    return random.choice(
        [
            "[" * random.choice([50, 101, 330, 999, 5000]) + "]" * 50,
            "{a: " * random.choice([99, 101, 700]) + "1" + "}" * random.choice([99, 101, 700]),
            "1e999",
            "-1e999",
            ".nan",
            "9" * random.choice([20, 400, 5000]),
            "-" + "9" * 30,
            "0",
            "-1",
            "[1, 2]",
            "{x: 1}",
            "true",
            "null",
            "~",
            '"h\\ud800i"',
            '"\\udc00"',
            "'a\x00b'",
            "!!python/object:os.system x",
            "&a [*a]",
            "*nothing",
            '"' + "x" * 100_000 + '"',
            "\t",
            "? [a]\n: b",
        ]
    )


def mutate(text: str, targets: list[str]) -> tuple[bytes, list[str]]:
    """One mutated recipe (bytes: some mutations are not UTF-8) and `--set` arguments."""
    lines = text.split("\n")
    sets: list[str] = []
    raw_inserts: list[bytes] = []
    for _ in range(random.randint(1, 3)):
        op = random.choice(
            ["delete", "duplicate", "swap", "bytes", "value", "value", "extends", "extends", "set", "nul", "surrogate"]
        )
        i = random.randrange(len(lines))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = random.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "bytes":
            raw_inserts.append(bytes(random.randrange(256) for _ in range(random.randint(1, 8))))
        elif op == "value":
            m = re.match(r"^(\s*(?:- )?[\w.-]+:)\s*(.*)$", lines[i])
            if m:
                lines[i] = f"{m[1]} {_value()}"
        elif op == "extends":
            target = random.choice(targets)
            lines = [ln for ln in lines if not ln.startswith("extends:")]
            lines.insert(0, f"extends: {json.dumps(target)}" if random.random() < 0.8 else f"extends: [{target}]")
        elif op == "set":
            key = random.choice(
                ["model.name_or_path", "training.learning_rate", "name", "adapter.r", "datasets.train.0"]
            )
            sets.append(f"{key}={_value()}")
        elif op == "nul":
            pos = random.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + "\x00" + lines[i][pos:]
        elif op == "surrogate":
            pos = random.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + random.choice(['"\\ud800"', "\udcff", '"\\uDFFF"']) + lines[i][pos:]
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    for chunk in raw_inserts:
        pos = random.randrange(len(data) + 1)
        data = data[:pos] + chunk + data[pos:]
    return data, sets


def check_validate_output(code, out: str, err: str) -> list[str]:
    """The lines that are not located (diagnostics on stdout; on stderr only the summary or a usage error)."""
    bad = [ln for ln in out.splitlines() if ln.strip() and not LOCATED.match(ln)]
    bad += [ln for ln in err.splitlines() if ln.strip() and not (SUMMARY.match(ln) or USAGE.match(ln))]
    if code not in (0, 1, 2):
        bad.append(f"exit code {code}")
    return bad


def fuzz_recipes(n: int, timeout: float, work: Path) -> Counter:
    tree = work / "tree"
    shutil.copytree(ROOT / "recipes", tree / "recipes")
    (tree / "assets").symlink_to(ROOT / "assets")
    targets = hostile_targets(work)
    sources = sorted((tree / "recipes").glob("*.yaml")) + sorted((tree / "recipes/tiny").glob("*.yaml"))
    counts: Counter = Counter()
    for case in range(n):
        source = random.choice(sources)
        data, sets = mutate(source.read_text(), targets)
        mutant = source.parent / f"fuzz-{case}.yaml"
        mutant.write_bytes(data)
        if b"self.yaml" in data:
            (source.parent / "self.yaml").write_bytes(data.replace(b"self.yaml", mutant.name.encode()))
        argv = ["validate", str(mutant), *(a for s in sets for a in ("--set", s))]
        if random.random() < 0.2:
            argv += ["--format", "github"]
        outcome, code, out, err = run_cli(argv, timeout)
        counts["cases"] += 1
        counts[f"exit {code}"] += 1
        if outcome != "ok":
            counts[outcome + "s"] += 1
            _report(outcome, mutant, argv, err)
        elif "--format" not in argv:
            unlocated = check_validate_output(code, out, err)
            if unlocated:
                counts["unlocated"] += 1
                _report("unlocated", mutant, argv, "\n".join(unlocated[:3]))
        mutant.unlink()
    return counts


# --- data ------------------------------------------------------------------------------------------------------------


def _row(kind: str) -> dict:
    if kind == "messages":
        return {"messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}]}
    return {"prompt": "q?", "chosen": "good", "rejected": "bad"}


def hostile_line(kind: str) -> bytes:
    good = json.dumps(_row(kind))
    op = random.choice(
        ["utf8", "surrogate", "dupkey", "nul", "deep", "bignum", "type", "long", "garbage", "truncate", "bom", "array"]
    )
    if op == "utf8":
        b = good.encode()
        pos = random.randrange(len(b))
        return b[:pos] + random.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + b[pos:]
    if op == "surrogate":
        return good.replace("q?", random.choice(["h\\ud800i", "\\udc00", "\\ud83d", "\\ud83d\\ude00"])).encode()
    if op == "dupkey":
        return (good[:-1] + ", " + good[1:-1] + "}").encode()
    if op == "nul":
        return (
            good.replace("a.", "a\x00.").encode() if random.random() < 0.5 else good.replace("a.", "a\\u0000.").encode()
        )
    if op == "deep":
        depth = random.choice([100, 1000, 100_000])
        return ('{"messages": ' + "[" * depth + "]" * depth + "}").encode()
    if op == "bignum":
        return good.replace('"q?"', random.choice(["1e999", "9" * 5000, "-0", "NaN", "Infinity"])).encode()
    if op == "type":
        return good.replace('"a."', random.choice(["null", "1", "[]", "{}", "true", '""', '" "'])).encode()
    if op == "long":
        return good.replace("q?", "x" * random.choice([10_000, 3_000_000])).encode()
    if op == "garbage":
        return bytes(random.randrange(256) for _ in range(random.randint(1, 200))).replace(b"\n", b"")
    if op == "truncate":
        return good[: random.randrange(len(good))].encode()
    if op == "bom":
        return b"\xef\xbb\xbf" + good.encode()
    return b"[" + good.encode() + b"]"


def fuzz_data(n: int, timeout: float, work: Path) -> Counter:
    counts: Counter = Counter()
    bases = {"messages": ROOT / "recipes/tiny/sft-lora.yaml", "preference": ROOT / "recipes/tiny/dpo-qlora.yaml"}
    for case in range(n):
        fmt = random.choice(list(bases))
        kind = random.choice(["jsonl", "jsonl", "jsonl", "json", "text", "csv"])
        lines = [json.dumps(_row(fmt)).encode() for _ in range(random.randint(0, 5))]
        for _ in range(random.randint(1, 6)):
            lines.insert(random.randint(0, len(lines)), hostile_line(fmt))
        data = work / f"data-{case}.{kind}"
        body = b"\n".join(lines) + random.choice([b"\n", b"", b"\r\n"])
        if kind == "json" and random.random() < 0.7:
            body = b"[" + b",\n".join(lines) + b"]"
        data.write_bytes(body)
        recipe = work / f"data-{case}.yaml"
        source = {"source": f"{kind}:{data}", "format": fmt if kind != "text" else "text"}
        recipe.write_text(
            f"version: 1\nname: fuzz\nextends: {bases[fmt]}\n"
            f"datasets:\n  train: [{json.dumps(source)}]\n  max_row_bytes: 1000000\n"
        )
        outcome, code, out, err = run_cli(["data", str(recipe), "--check", "--no-tokens", "--format", "json"], timeout)
        counts["cases"] += 1
        counts[f"exit {code}"] += 1
        if outcome != "ok":
            counts[outcome + "s"] += 1
            _report(outcome, data, [], err)
            continue
        if code == 1 and not out.strip():  # the recipe itself was refused: its lines must be located
            bad = check_validate_output(code, err, "")
        else:
            bad = _unlocated_findings(out, str(data))
        if bad:
            counts["unlocated"] += 1
            _report("unlocated", data, [], "\n".join(bad[:3]))
    return counts


def _unlocated_findings(out: str, data: str) -> list[str]:
    try:
        report = json.loads(out)["check"]
    except (ValueError, KeyError):
        return [f"not JSON: {out[:200]!r}"]
    at = re.compile(re.escape(data) + r":\d+(:\d+)?$")
    bad = [e["at"] for v in report["examples"].values() for e in v if not at.match(e.get("at", e["location"]))]
    bad += [u for u in report["unreadable"] if not u.startswith("datasets.")]
    return bad


def _report(what: str, path: Path, argv: list, detail: str) -> None:
    print(f"--- {what}: {path} {' '.join(argv[2:])[:200]}\n{detail[-2000:]}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=1000, help="mutated recipes (default 1000)")
    parser.add_argument("--data", type=int, default=120, help="hostile data files (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    args = parser.parse_args()
    random.seed(args.seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="recipe-fuzz-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the data check's cache stays here
        work = Path(tmp)
        recipes = fuzz_recipes(args.recipes, args.timeout, work)
        data = fuzz_data(args.data, args.timeout, work)
    failed = 0
    for name, counts in (("recipe validate", recipes), ("recipe data --check", data)):
        exits = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k.startswith("exit"))
        print(
            f"{name}: {counts['cases']} cases; tracebacks {counts['tracebacks']}, unlocated messages "
            f"{counts['unlocated']}, hangs {counts['hangs']} ({exits})"
        )
        failed += counts["tracebacks"] + counts["unlocated"] + counts["hangs"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
