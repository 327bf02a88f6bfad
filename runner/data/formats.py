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


class FormatError(ValueError):
    """A row does not have the shape its format preset expects."""


def _user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def _check_messages(messages: Any, column: str) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise FormatError(
            f"`{column}` should be a non-empty list of {{role, content}} turns, got {type(messages).__name__}"
        )
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise FormatError(f"`{column}[{i}]` should be a {{role, content}} mapping, got {m!r:.80}")
        out.append({"role": str(m["role"]), "content": "" if m["content"] is None else str(m["content"])})
    return out


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


def _preference_from_conversations(chosen: Any, rejected: Any, prompt: Any = None) -> Row:
    if isinstance(chosen, str) and isinstance(rejected, str) and prompt is None:
        raise FormatError(
            "`chosen` and `rejected` are strings but there is no `prompt` column: add one (map it with `columns:`), "
            "or give whole conversations as message lists"
        )
    chosen = _check_messages(chosen if isinstance(chosen, list) else _assistant(chosen), "chosen")
    rejected = _check_messages(rejected if isinstance(rejected, list) else _assistant(rejected), "rejected")
    if prompt is not None:
        prompt_msgs = _check_messages(prompt, "prompt") if isinstance(prompt, list) else _user(str(prompt))
        # binarized sets repeat the prompt at the start of chosen/rejected: drop it there
        if chosen[: len(prompt_msgs)] == prompt_msgs and rejected[: len(prompt_msgs)] == prompt_msgs:
            chosen, rejected = chosen[len(prompt_msgs) :], rejected[len(prompt_msgs) :]
        return {"prompt": prompt_msgs, "chosen": chosen, "rejected": rejected}
    shared, c, r = split_shared_prefix(chosen, rejected)
    if not shared:
        raise FormatError("`chosen` and `rejected` share no prompt turns and no `prompt` column is given")
    return {"prompt": shared, "chosen": c, "rejected": r}


def _hh_rlhf(row: Row) -> Row:
    chosen, rejected = parse_hh_dialogue(row["chosen"]), parse_hh_dialogue(row["rejected"])
    shared, c, r = split_shared_prefix(chosen, rejected)
    if not shared or not c or not r:
        raise FormatError("HH-RLHF `chosen` and `rejected` should share the dialogue up to the last assistant turn")
    return {"prompt": shared, "chosen": c, "rejected": r}


def _sharegpt(row: Row) -> Row:
    roles = {
        "human": "user",
        "user": "user",
        "gpt": "assistant",
        "assistant": "assistant",
        "system": "system",
        "chatgpt": "assistant",
        "bing": "assistant",
    }
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise FormatError("`conversations` should be a non-empty list of {from, value} turns")
    messages = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise FormatError(f"`conversations[{i}]` should be a {{from, value}} mapping")
        if t["from"] not in roles:
            raise FormatError(f"`conversations[{i}].from` is '{t['from']}'; expected human, gpt or system")
        messages.append({"role": roles[t["from"]], "content": str(t["value"])})
    return {"messages": messages}


def _lima(row: Row) -> Row:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise FormatError("`conversations` should be a non-empty list of strings (user and assistant alternating)")
    return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]}


def _alpaca(row: Row) -> Row:
    instruction, extra, output = row["instruction"], row.get("input") or "", row["output"]
    prompt = f"{instruction}\n\n{extra}" if str(extra).strip() else str(instruction)
    return {"prompt": _user(prompt), "completion": _assistant(str(output))}


def _triviaqa(row: Row) -> Row:
    answer = row["answer"]
    value = answer.get("value") if isinstance(answer, dict) else answer
    if not isinstance(value, str) or not value:
        raise FormatError("`answer` should be a TriviaQA answer record with a `value` (or a string)")
    return {"prompt": _user(str(row["question"])), "completion": _assistant(value)}


def _prompt_completion(row: Row) -> Row:
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        return {"prompt": _user(prompt), "completion": _assistant(completion)}
    return {"prompt": _check_messages(prompt, "prompt"), "completion": _check_messages(completion, "completion")}


def _unpaired(row: Row) -> Row:
    out = _prompt_completion(row)
    label = row["label"]
    if isinstance(label, str) and label.lower() in ("true", "false"):
        label = label.lower() == "true"
    if not isinstance(label, (bool, int)) or label not in (0, 1, True, False):
        raise FormatError(f"`label` should be true (desirable) or false, got {label!r}")
    return {**out, "label": bool(label)}


def _prompt_only(row: Row) -> Row:
    prompt = row["prompt"]
    return {"prompt": _user(prompt) if isinstance(prompt, str) else _check_messages(prompt, "prompt")}


def _text(row: Row) -> Row:
    if not isinstance(row["text"], str):
        raise FormatError("`text` should be a string")
    return {"text": row["text"]}


PARSERS: dict[str, Callable[[Row], Row]] = {
    "messages": lambda row: {"messages": _check_messages(row["messages"], "messages")},
    "ultrachat": lambda row: {"messages": _check_messages(row["messages"], "messages")},
    "sharegpt": _sharegpt,
    "lima": _lima,
    "text": _text,
    "prompt-completion": _prompt_completion,
    "alpaca": _alpaca,
    "triviaqa": _triviaqa,
    "preference": lambda row: _preference_from_conversations(row["chosen"], row["rejected"], row.get("prompt")),
    "ultrafeedback": lambda row: _preference_from_conversations(row["chosen"], row["rejected"], row["prompt"]),
    "hh-rlhf": _hh_rlhf,
    "unpaired-preference": _unpaired,
    "prompt-only": _prompt_only,
}


def convert(fmt: str, row: Row) -> Row:
    """One row of `fmt` (canonical columns) -> its canonical record. Raises FormatError."""
    try:
        return PARSERS[fmt](row)
    except KeyError as exc:
        raise FormatError(f"missing column `{exc.args[0]}`") from None


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
