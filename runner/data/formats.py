"""Format presets: one row of a public dataset format -> the rows TRL's trainers read.

Pure functions over plain dicts (no torch, no datasets), so each preset is tested on
fixture rows. Rows arrive with canonical column names (after `columns:` renaming) and
leave in TRL's conversational shapes:

  conversation       {"messages": [{role, content}, ...]}
  text               {"text": str}
  prompt-completion  {"prompt": [user turn(s)], "completion": [assistant turn]}
  preference         {"prompt": [turns], "chosen": [assistant turn], "rejected": [assistant turn]}
  unpaired           {"prompt": [turns], "completion": [assistant turn], "label": bool}
  prompt-only        {"prompt": [turns]}

Strings become single turns (a prompt string is the user's turn, a completion the
assistant's), so every source of a mixture has the same shape and the chat template
decides how turns are rendered; only `text` stays a string.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from schemas.objectives import facts

Row = dict[str, Any]
Message = dict[str, str]


# The kinds of row problems (`recipe data --check` counts rows by kind). Line-level kinds come from reading the file
# (runner/data/readers.py); the others from the presets here.
KINDS = {
    "malformed-line": "the line is not valid JSON or CSV",
    "invalid-utf8": "the line is not valid UTF-8 (or a \\u escape is half a surrogate pair)",
    "duplicate-key": "a JSON object gives the same key twice (a JSON reader keeps only the last)",
    "not-an-object": "the row is not a JSON object",
    "too-large": "the row is larger than datasets.max_row_bytes",
    "missing-field": "a required field is absent or null",
    "wrong-type": "a field has the wrong type",
    "inconsistent-type": "a field's type differs from the same field in the source's first row",
    "empty-value": "a prompt, completion, answer, turn or text is empty or whitespace only",
    "identical-pair": "chosen and rejected are identical",
    "bad-roles": "a conversation has an unknown role or turns in the wrong order",
    "last-turn": "a conversation or completion does not end with the assistant's turn (or a prompt with the user's)",
}
ROLES = ("system", "user", "assistant", "tool")


class FormatError(ValueError):
    """A row does not have the shape its format preset expects; `kind` is one of KINDS."""

    def __init__(self, message: str, kind: str = "wrong-type", column: str | None = None):
        super().__init__(message)
        assert kind in KINDS, kind
        self.kind, self.column = kind, column


def _present(value: Any, column: str) -> Any:
    if value is None:
        raise FormatError(f"`{column}` is missing (null)", "missing-field", column)
    return value


def _text_value(value: Any, column: str) -> str:
    """A required string field: present, a string, not blank."""
    _present(value, column)
    if not isinstance(value, str):
        raise FormatError(f"`{column}` should be a string, got {type(value).__name__}")
    if not value.strip():
        raise FormatError(f"`{column}` is {'empty' if not value else 'whitespace only'}", "empty-value")
    return value


def _user(text: Any, column: str = "prompt") -> list[Message]:
    return [{"role": "user", "content": _text_value(text, column)}]


def _assistant(text: Any, column: str = "completion") -> list[Message]:
    return [{"role": "assistant", "content": _text_value(text, column)}]


def _check_messages(messages: Any, column: str) -> list[Message]:
    _present(messages, column)
    if not isinstance(messages, list):
        raise FormatError(f"`{column}` should be a list of {{role, content}} turns, got {type(messages).__name__}")
    if not messages:
        raise FormatError(f"`{column}` is an empty list of turns", "empty-value")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise FormatError(f"`{column}[{i}]` should be a {{role, content}} mapping, got {m!r:.80}")
        if m["role"] not in ROLES:
            raise FormatError(f"`{column}[{i}].role` is {m['role']!r}; expected one of {', '.join(ROLES)}", "bad-roles")
        content = _present(m["content"], f"{column}[{i}].content")
        if not isinstance(content, str):
            raise FormatError(f"`{column}[{i}].content` should be a string, got {type(content).__name__}")
        if m["role"] != "system" and not content.strip():  # an empty system prompt is harmless
            raise FormatError(f"`{column}[{i}].content` ({m['role']}) is empty or whitespace only", "empty-value")
        out.append({"role": m["role"], "content": content})
    return out


def _check_order(turns: list[Message], column: str, *, ends_with: tuple[str, ...]) -> None:
    """System only first; user and assistant alternate, the user's first; the last turn's role is in `ends_with`."""
    for i, m in enumerate(turns):
        if m["role"] == "system" and i > 0:
            raise FormatError(f"`{column}[{i}]` is a system turn after the start", "bad-roles")
    talk = [(i, m["role"]) for i, m in enumerate(turns) if m["role"] in ("user", "assistant")]
    if talk and talk[0][1] != "user":
        raise FormatError(f"`{column}[{talk[0][0]}]`: the first turn is the assistant's, not the user's", "bad-roles")
    for (_, a), (j, b) in zip(talk, talk[1:]):
        if a == b:
            raise FormatError(f"`{column}[{j}]` is a second {b} turn in a row", "bad-roles")
    if turns[-1]["role"] not in ends_with:
        raise FormatError(
            f"`{column}` ends with a {turns[-1]['role']} turn; it should end with the {' or '.join(ends_with)}'s",
            "last-turn",
        )


def _completion_turns(turns: list[Message], column: str) -> None:
    """A completion (or chosen/rejected) continues a prompt: assistant (and tool) turns, the assistant's first and
    last."""
    odd = next((i for i, m in enumerate(turns) if m["role"] not in ("assistant", "tool")), None)
    if odd is not None or turns[0]["role"] != "assistant":
        i = 0 if odd is None else odd
        raise FormatError(f"`{column}[{i}]` is a {turns[i]['role']} turn; {column} is the assistant's", "bad-roles")
    if turns[-1]["role"] != "assistant":
        raise FormatError(f"`{column}` ends with a {turns[-1]['role']} turn, not the assistant's", "last-turn")


# --- parsers: a row of each public format -> a canonical record ----------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> list[Message]:
    """Anthropic HH-RLHF dialogue text -> messages (`\\n\\nHuman: ` / `\\n\\nAssistant: ` turns)."""
    if not isinstance(text, str) or not text.strip():
        raise FormatError("an HH-RLHF dialogue should be a non-empty string")
    parts = _HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text.lstrip("\n"))
    if len(parts) < 3:
        raise FormatError(f"no `Human:`/`Assistant:` turns found in {text[:60]!r}")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if messages and messages[-1]["role"] == role:  # a turn split by a stray marker: join it
            messages[-1]["content"] += "\n\n" + content.strip()
        else:
            messages.append({"role": role, "content": content.strip()})
    return messages


def split_shared_prefix(
    chosen: list[Message], rejected: list[Message]
) -> tuple[list[Message], list[Message], list[Message]]:
    """(shared prompt turns, chosen continuation, rejected continuation)."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    # the continuations start with an assistant turn: the prompt ends with the user's
    while n > 0 and chosen[n]["role"] != "assistant":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _turns(value: Any, column: str, single: Callable[[Any, str], list[Message]]) -> list[Message]:
    """A column that is a string (one turn, made by `single`), one {role, content} turn, or a list of them."""
    _present(value, column)
    if isinstance(value, dict):
        return _check_messages([value], column)
    return _check_messages(value, column) if isinstance(value, list) else single(value, column)


def _preference_from_conversations(chosen: Any, rejected: Any, prompt: Any = None) -> Row:
    _present(chosen, "chosen")
    _present(rejected, "rejected")
    if isinstance(chosen, str) and isinstance(rejected, str) and prompt is None:
        raise FormatError(
            "`chosen` and `rejected` are strings but there is no `prompt` column: add one (map it with `columns:`), "
            "or give whole conversations as message lists",
            "missing-field",
            "prompt",
        )
    chosen = _turns(chosen, "chosen", _assistant)
    rejected = _turns(rejected, "rejected", _assistant)
    if prompt is not None:
        prompt_msgs = _turns(prompt, "prompt", _user)
        # binarized sets repeat the prompt at the start of chosen/rejected: drop it there
        if chosen[: len(prompt_msgs)] == prompt_msgs and rejected[: len(prompt_msgs)] == prompt_msgs:
            chosen, rejected = chosen[len(prompt_msgs) :], rejected[len(prompt_msgs) :]
        return {"prompt": prompt_msgs, "chosen": chosen, "rejected": rejected}
    shared, c, r = split_shared_prefix(chosen, rejected)
    if not shared:
        raise FormatError("`chosen` and `rejected` share no prompt turns and no `prompt` column is given", "bad-roles")
    return {"prompt": shared, "chosen": c, "rejected": r}


def _hh_rlhf(row: Row) -> Row:
    chosen = _check_messages(parse_hh_dialogue(_text_value(row["chosen"], "chosen")), "chosen")
    rejected = _check_messages(parse_hh_dialogue(_text_value(row["rejected"], "rejected")), "rejected")
    shared, c, r = split_shared_prefix(chosen, rejected)
    if not shared or not c or not r:
        raise FormatError(
            "HH-RLHF `chosen` and `rejected` should share the dialogue up to the last assistant turn", "bad-roles"
        )
    return {"prompt": shared, "chosen": c, "rejected": r}


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
}


def _sharegpt_turns(turns: Any, column: str) -> list[Message]:
    """ShareGPT `{from, value}` turns -> {role, content} messages."""
    turns = _present(turns, column)
    if not isinstance(turns, list):
        raise FormatError(f"`{column}` should be a list of {{from, value}} turns, got {type(turns).__name__}")
    if not turns:
        raise FormatError(f"`{column}` is an empty list of turns", "empty-value")
    messages = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise FormatError(f"`{column}[{i}]` should be a {{from, value}} mapping")
        if t["from"] not in SHAREGPT_ROLES:
            raise FormatError(f"`{column}[{i}].from` is '{t['from']}'; expected human, gpt or system", "bad-roles")
        messages.append({"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]})
    return _check_messages(messages, column)


def _sharegpt(row: Row) -> Row:
    return {"messages": _sharegpt_turns(row["conversations"], "conversations")}


def _sharegpt_preference(row: Row) -> Row:
    prompt = _sharegpt_turns(row["conversations"], "conversations")
    answers = {}
    for column in ("chosen", "rejected"):
        value = _present(row[column], column)
        answers[column] = _sharegpt_turns([value], column) if isinstance(value, dict) else _assistant(value, column)
    return {"prompt": prompt, **answers}


def _alpaca_preference(row: Row) -> Row:
    prompt = _alpaca({"instruction": row["instruction"], "input": row.get("input"), "output": "-"})["prompt"]
    return {
        "prompt": prompt,
        "chosen": _assistant(row["chosen"], "chosen"),
        "rejected": _assistant(row["rejected"], "rejected"),
    }


def _lima(row: Row) -> Row:
    turns = _present(row["conversations"], "conversations")
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise FormatError("`conversations` should be a list of strings (user and assistant alternating)")
    if not turns:
        raise FormatError("`conversations` is an empty list of turns", "empty-value")
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return {"messages": _check_messages(messages, "conversations")}


def _alpaca(row: Row) -> Row:
    instruction = _text_value(row["instruction"], "instruction")
    extra, output = row.get("input") or "", _text_value(row["output"], "output")
    if not isinstance(extra, str):
        raise FormatError(f"`input` should be a string, got {type(extra).__name__}")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return {"prompt": _user(prompt), "completion": _assistant(output)}


def _triviaqa(row: Row) -> Row:
    answer = _present(row["answer"], "answer")
    value = answer.get("value") if isinstance(answer, dict) else answer
    if not isinstance(value, str):
        raise FormatError("`answer` should be a TriviaQA answer record with a `value` (or a string)")
    return {"prompt": _user(row["question"], "question"), "completion": _assistant(value, "answer")}


def _prompt_completion(row: Row) -> Row:
    return {
        "prompt": _turns(row["prompt"], "prompt", _user),
        "completion": _turns(row["completion"], "completion", _assistant),
    }


def _unpaired(row: Row) -> Row:
    out = _prompt_completion(row)
    label = _present(row["label"], "label")
    if isinstance(label, str) and label.lower() in ("true", "false"):
        label = label.lower() == "true"
    if not isinstance(label, (bool, int)) or label not in (0, 1, True, False):
        raise FormatError(f"`label` should be true (desirable) or false, got {label!r}")
    return {**out, "label": bool(label)}


def _prompt_only(row: Row) -> Row:
    return {"prompt": _turns(row["prompt"], "prompt", _user)}


def _text(row: Row) -> Row:
    return {"text": _text_value(row["text"], "text")}


PARSERS: dict[str, Callable[[Row], Row]] = {
    "messages": lambda row: {"messages": _check_messages(row["messages"], "messages")},
    "ultrachat": lambda row: {"messages": _check_messages(row["messages"], "messages")},
    "sharegpt": _sharegpt,
    "lima": _lima,
    "text": _text,
    "prompt-completion": _prompt_completion,
    "alpaca": _alpaca,
    "alpaca-preference": _alpaca_preference,
    "sharegpt-preference": _sharegpt_preference,
    "triviaqa": _triviaqa,
    "preference": lambda row: _preference_from_conversations(row["chosen"], row["rejected"], row.get("prompt")),
    "ultrafeedback": lambda row: _preference_from_conversations(row["chosen"], row["rejected"], row["prompt"]),
    "hh-rlhf": _hh_rlhf,
    "unpaired-preference": _unpaired,
    "prompt-only": _prompt_only,
}


def validate(record: Row) -> Row:
    """The checks every canonical record passes, whatever format it came from: turn order, the last turn, a pair
    whose answers differ."""
    if "messages" in record:
        _check_order(record["messages"], "messages", ends_with=("assistant",))
    if isinstance(record.get("prompt"), list):
        _check_order(record["prompt"], "prompt", ends_with=("user", "tool"))
    for column in ("completion", "chosen", "rejected"):
        if column in record:
            _completion_turns(record[column], column)
    if "chosen" in record and record["chosen"] == record["rejected"]:
        raise FormatError("`chosen` and `rejected` are identical", "identical-pair")
    return record


def convert(fmt: str, row: Row) -> Row:
    """One row of `fmt` (canonical columns) -> its canonical record, validated. Raises FormatError."""
    try:
        return validate(PARSERS[fmt](row))
    except KeyError as exc:
        raise FormatError(f"`{exc.args[0]}` is missing", "missing-field", exc.args[0]) from None


def for_objective(record: Row, objective: str) -> Iterable[Row]:
    """Shape a canonical record for the objective's trainer (KTO unpairs preference pairs, online RL keeps prompts)."""
    rows = facts(objective).rows
    if rows == "unpaired" and "chosen" in record:
        prompt = record.get("prompt", [])
        yield {"prompt": prompt, "completion": record["chosen"], "label": True}
        yield {"prompt": prompt, "completion": record["rejected"], "label": False}
    elif rows == "prompt":
        yield {"prompt": record["prompt"]}
    elif rows == "text":
        yield {"text": record["text"]}
    else:
        yield record
