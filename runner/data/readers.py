"""Reading a source row by row, as the file has it: (line number or row index, row or None, problem or None) per
row, streaming. jsonl, csv and text files are read line by line and a json file element by element, here, so each
problem has its FILE:LINE; Hub, parquet and save_to_disk sources (and a `%` slice) through `datasets`, located by
split and row index.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from schemas.datasets import DatasetSource, split_source

from .loading import DataError, Where, load_with_datasets

BOM = b"\xef\xbb\xbf"
LINE_KINDS = ("jsonl", "json", "csv", "text")  # sources this module reads itself, with line numbers


class SourceUnreadable(Exception):
    """The whole source cannot be read (no such file, an empty file, an unknown split): one message, no rows."""


def row_slice(split: str) -> tuple[int, Optional[int]] | None:
    """`train` -> (0, None); `train[:100]`/`train[10:20]` -> bounds; None for what only `datasets` reads (`%`)."""
    m = re.fullmatch(r"train(?:\[(\d*):(\d*)\])?", split)
    if not m:
        return None
    return int(m[1] or 0), (int(m[2]) if m[2] else None)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        self.key = key


def _unique_pairs(pairs: list) -> dict:
    """json's object hook: an object as a dict, refusing a key given twice (json would keep the last silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs)
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)(\\u[dD][89a-fA-F][0-9a-fA-F]{2})")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _lone_surrogate(text: str, value: Any) -> Optional[int]:
    """The 1-based column of the first `\\uD800`-`\\uDFFF` escape of `text` that is not half of a pair (1 when it
    cannot be told), or None when `value` (what json read from `text`) holds no lone surrogate."""
    if "\\u" not in text or not _has_surrogate(value):
        return None
    pending = None  # the span of a high surrogate waiting for its low half
    for m in _SURROGATE_ESCAPE.finditer(text):
        start, end = m.span(2)
        high = m.group(2)[3] in "89abAB"
        if pending is not None and not high and start == pending[1]:
            pending = None
            continue
        if pending is not None:
            return pending[0] + 1
        if not high:
            return start + 1
        pending = (start, end)
    return pending[0] + 1 if pending is not None else 1


def _key_column(text: str, key: str) -> Optional[int]:
    """The 1-based column of the second `"key":` in a line, or None."""
    found = [m.start() + 1 for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    if len(found) < 2:
        found = [m.start() + 1 for m in re.finditer(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text)]
    return found[1] if len(found) > 1 else None


def _decode_problem(text: str, exc: Exception) -> tuple:
    """(kind, detail, column name, column number) for what json refused in `text`."""
    if isinstance(exc, _DuplicateKey):
        return (
            "duplicate-key",
            f"the key {json.dumps(exc.key)} is given twice in one object (a JSON reader keeps only the last)",
            exc.key,
            _key_column(text, exc.key),
        )
    assert isinstance(exc, json.JSONDecodeError)
    return "malformed-line", f"not valid JSON: {exc.msg} at column {exc.colno}", None, exc.colno


def _json_row(text: str) -> tuple[Any, Optional[tuple]]:
    try:
        value = _DECODER.decode(text)
    except (json.JSONDecodeError, _DuplicateKey) as exc:
        return None, _decode_problem(text, exc)
    except RecursionError:
        return None, ("malformed-line", "not valid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return None, ("malformed-line", f"cannot read the JSON: {str(exc).split(';')[0]}")
    column = _lone_surrogate(text, value)
    if column is not None:
        return None, ("invalid-utf8", "a \\u escape of half a surrogate pair: not a character", None, column)
    if isinstance(value, dict):
        return value, None
    if isinstance(value, list):
        return None, (
            "not-an-object",
            "a JSON array, not an object: a jsonl file has one JSON object per line (for a file that is one JSON "
            "array, use the `json:` source kind)",
        )
    return None, ("not-an-object", f"a JSON {type(value).__name__}, not an object")


def _utf8_problem(raw: bytes, exc: UnicodeDecodeError, of: str = "line") -> tuple:
    """The invalid-utf8 problem, at the column (in characters) of the first byte that is not UTF-8."""
    start = raw.rfind(b"\n", 0, exc.start) + 1
    column = len(raw[start : exc.start].decode("utf-8", errors="replace")) + 1
    return "invalid-utf8", f"invalid UTF-8 ({exc.reason}: byte 0x{raw[exc.start]:02x})", None, column


def _lines(
    path: Path, max_bytes: int, keep_blank: bool, span: Optional[tuple[int, int, int]] = None
) -> Iterator[tuple[int, bytes | None, Optional[tuple]]]:
    """(line number, the line without its end, problem) for each line; blank lines skipped unless `keep_blank`.
    `span` (start byte, end byte, number of the line at start): a part of the file, starting at a line start."""
    start, end, first = span or (0, None, 1)
    with path.open("rb") as f:
        f.seek(start)
        for number, raw in enumerate(f, first):
            if end is not None and start >= end:
                return
            start += len(raw)
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            line = raw.rstrip(b"\r\n")
            if not keep_blank and not line.strip():
                continue
            if len(line) > max_bytes:
                yield number, None, ("too-large", f"{len(line):,} bytes, over datasets.max_row_bytes ({max_bytes:,})")
                continue
            yield number, line, None


def jsonl_rows(path: Path, max_bytes: int, span=None) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    for number, line, problem in _lines(path, max_bytes, keep_blank=False, span=span):
        if problem:
            yield number, None, problem
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, None, _utf8_problem(line, exc)
            continue
        row, problem = _json_row(text)
        yield number, row, problem


def _read_text(path: Path, max_bytes: int) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    for number, line, problem in _lines(path, max_bytes, keep_blank=True):
        if problem:
            yield number, None, problem
            continue
        try:
            yield number, {"text": line.decode("utf-8")}, None
        except UnicodeDecodeError as exc:
            yield number, None, _utf8_problem(line, exc)


def _read_json(path: Path, max_bytes: int) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    """A file that is one JSON array of objects (or one object per line, which `datasets` also reads)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        yield raw.count(b"\n", 0, exc.start) + 1, None, _utf8_problem(raw, exc)
        return
    start = len(text) - len(text.lstrip())
    if not text[start:].startswith("["):  # not an array: one object per line
        yield from jsonl_rows(path, max_bytes)
        return
    decoder, pos, line, seen = _DECODER, start + 1, 1 + text.count("\n", 0, start), start
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line += text.count("\n", seen, pos)
        seen = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield (
                exc.lineno,
                None,
                ("malformed-line", f"not valid JSON: {exc.msg} at column {exc.colno}", None, exc.colno),
            )
            return  # the rest of the array cannot be delimited
        except _DuplicateKey as exc:
            yield line, None, _decode_problem("", exc)[:3]
            end = _skip_value(text, pos)
            if end is None:
                return
            pos = end
            continue
        except (RecursionError, ValueError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
            yield line, None, ("malformed-line", f"cannot read the JSON: {why}")
            return
        if _lone_surrogate(text[pos:end], value) is not None:
            yield line, None, ("invalid-utf8", "a \\u escape of half a surrogate pair: not a character")
            pos = end
            continue
        if end - pos > max_bytes:
            yield line, None, ("too-large", f"{end - pos:,} bytes, over datasets.max_row_bytes")
        elif isinstance(value, dict):
            yield line, value, None
        else:
            yield (
                line,
                None,
                ("not-an-object", f"a JSON {type(value).__name__} in the array, not an object"),
            )
        pos = end


def _skip_value(text: str, pos: int) -> Optional[int]:
    """The end of the JSON value at `pos`, read without the duplicate-key check (None when it is not JSON)."""
    try:
        return json.JSONDecoder().raw_decode(text, pos)[1]
    except (ValueError, RecursionError):
        return None


def _csv_value(text: str) -> Any:
    """A CSV cell typed the way `datasets`' csv loader (pandas) reads it: empty -> null, numbers, booleans."""
    if text == "":
        return None
    if text in ("True", "TRUE", "true"):
        return True
    if text in ("False", "FALSE", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path, max_bytes: int) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceUnreadable(f"{path}:1: the header line is not valid CSV: {exc}") from None
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, ("malformed-line", f"not valid CSV: {exc}")
                continue
            if not cells:
                continue
            if any(re.search("[\udc80-\udcff]", c) for c in cells):
                yield start, None, ("invalid-utf8", "invalid UTF-8")
            elif sum(len(c) for c in cells) > max_bytes:
                yield start, None, ("too-large", f"over datasets.max_row_bytes ({max_bytes:,})")
            elif len(cells) != len(header):
                yield start, None, ("malformed-line", f"{len(cells)} cells for {len(header)} columns")
            else:
                yield start, {h: _csv_value(c) for h, c in zip(header, cells)}, None


def _read_datasets(entry: DatasetSource) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    """Hub, parquet, save_to_disk sources (and a local file with a `%` slice): rows through `datasets`."""
    try:
        ds = load_with_datasets(entry, Where("?", 0, entry.source))
    except DataError as exc:
        raise SourceUnreadable(str(exc).split(": ", 1)[-1]) from None
    i = 0
    for batch in ds.iter(batch_size=1000):
        names = list(batch)
        for values in zip(*(batch[n] for n in names)):
            yield i, dict(zip(names, values)), None
            i += 1


def reads_lines(entry: DatasetSource) -> bool:
    """Whether this module reads the source itself, line by line (a local file, its whole split or a row slice)."""
    return split_source(entry.source)[0] in LINE_KINDS and row_slice(entry.split) is not None


def locate(entry: DatasetSource, number: int) -> str:
    """FILE:LINE for the files this module reads itself, else SOURCE [split S] row I."""
    kind, rest, _ = split_source(entry.source)
    if reads_lines(entry):
        return f"{rest}:{number}"
    return f"{rest} split {entry.split} row {number}" if kind in ("hf", "local") else f"{rest} row {number}"


READERS = {"jsonl": jsonl_rows, "json": _read_json, "csv": _read_csv, "text": _read_text}


def read_source(entry: DatasetSource, max_bytes: int) -> Iterator[tuple[int, Any, Optional[tuple]]]:
    """Each row of the source as the file has it (columns not yet renamed), `split` and `limit` applied."""
    kind, rest, _ = split_source(entry.source)
    bounds = row_slice(entry.split) if kind in LINE_KINDS else None
    if kind in LINE_KINDS and bounds is None and not re.match(r"train\[", entry.split):
        raise SourceUnreadable("a local file is one split; use `split: train` (or a slice like `train[:100]`)")
    if kind in LINE_KINDS:
        path = Path(rest)
        if not path.is_file():
            raise SourceUnreadable(f"no such file: {path}")
        if path.stat().st_size == 0:
            raise SourceUnreadable(f"{path} is empty: it has no rows")
    rows = READERS[kind](Path(rest), max_bytes) if bounds is not None else _read_datasets(entry)
    start, stop = bounds or (0, None)
    if entry.limit is not None:
        stop = start + entry.limit if stop is None else min(stop, start + entry.limit)
    for i, item in enumerate(rows):
        if i < start:
            continue
        if stop is not None and i >= stop:
            return
        yield item
