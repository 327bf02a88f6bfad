"""The built-in evaluation tasks of `recipe eval`: exact match, preference accuracy and win rate.

Rows are read with the training data's own code (`runner.data.sources.load_raw` and the format presets), so a task
reads `jsonl:`, `hf:` and the other sources, with `columns` renamed, exactly as training would; a row the preset
refuses stops the evaluation, located, before any model loads. Prompts are rendered as training rendered them: the
run's chat template with the generation prompt, tokenised without adding special tokens twice, as TRL does.
Torch is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from runner.common import answers
from runner.data.formats import FormatError, convert
from runner.data.sources import DataError, Where, load_raw
from schemas.evaluation import EvalTask, Generation

Messages = list[dict]


@dataclass
class Row:
    prompt: Messages
    references: list[str] = field(default_factory=list)  # exact-match: accepted answers; win-rate: the reference
    chosen: Optional[Messages] = None
    rejected: Optional[Messages] = None


@dataclass
class TaskData:
    task: EvalTask
    where: Where
    rows: list[Row]


def _content(turns: Messages) -> str:
    return turns[-1]["content"]


def read_rows(task: EvalTask, index: int, limit: Optional[int]) -> TaskData:
    """The task's rows (at most `limit`), converted by its format preset. Raises DataError naming the row."""
    entry = task.data
    where = Where("tasks", index, entry.source, section="evaluation")
    raw = load_raw(entry, where)
    count = len(raw) if limit is None else min(limit, len(raw))
    rows = []
    for i in range(count):
        source_row = raw[i]
        try:
            record = convert(entry.format, source_row)
        except FormatError as exc:
            raise DataError(f"{where}: row {i} does not fit format '{entry.format}': {exc}") from None
        if task.kind == "preference":
            rows.append(Row(record.get("prompt", []), chosen=record["chosen"], rejected=record["rejected"]))
            continue
        reference = record.get("completion") or record.get("chosen")
        accepted = [_content(reference)]
        if task.kind == "exact-match" and entry.format == "triviaqa":
            accepted = answers.aliases(source_row["answer"]) or accepted
        rows.append(Row(record["prompt"], references=accepted))
    if not rows:
        raise DataError(f"{where}: has no rows to evaluate on")
    return TaskData(task, where, rows)


class Renderer:
    """Token ids of prompts and answers as training saw them: through the chat template, or as plain text."""

    def __init__(self, tokenizer: Any, templated: bool):
        self.tokenizer, self.templated = tokenizer, templated

    def _ids(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def prompt_text(self, prompt: Messages) -> str:
        if self.templated:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in prompt) + "\n"

    def prompt_ids(self, prompt: Messages) -> list[int]:
        return self._ids(self.prompt_text(prompt), special=not self.templated)

    def pair_ids(self, prompt: Messages, completion: Messages) -> tuple[list[int], list[int]]:
        """(prompt ids, completion ids): the completion starts where the tokenised prompt and prompt + completion
        diverge, as TRL's DPO trainer splits them; plain text ends the completion with eos, as TRL adds it."""
        prompt_ids = self.prompt_ids(prompt)
        if self.templated:
            full = self._ids(self.tokenizer.apply_chat_template(prompt + completion, tokenize=False), special=False)
        else:
            full = self._ids(self.prompt_text(prompt) + _content(completion) + (self.tokenizer.eos_token or ""), True)
        start = next((i for i, (a, b) in enumerate(zip(prompt_ids, full)) if a != b), min(len(prompt_ids), len(full)))
        return full[:start], full[start:]


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    generation: Generation,
    batch_size: int,
    stop_ids: list[int],
) -> list[str]:
    """Answers to `prompts` (token ids), generated `batch_size` at a time: left-padded, prompts of similar length
    batched together, stopping at any of `stop_ids`."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device(model)
    out: list[str] = [""] * len(prompts)
    sampling = generation.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": generation.max_new_tokens,
        "eos_token_id": stop_ids,
        "pad_token_id": pad,
        "do_sample": sampling,
    }
    if sampling:
        kwargs.update(temperature=generation.temperature, top_p=generation.top_p)
        torch.manual_seed(generation.seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in batch], device=device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in batch], device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        for row, i in enumerate(batch):
            out[i] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
    return out


def vllm_answerer(trained: Any, tokenizer_path: str, generation: Generation, stop_ids: list[int]):
    """(answers of the trained output, answers of its base) generated by vLLM: the base loaded as the run trained it
    (bitsandbytes 4-bit for QLoRA), a LoRA adapter applied per request. Needs a GPU and vLLM; not run on the CPU
    machines the tests use."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    kwargs: dict[str, Any] = {"model": trained.base, "tokenizer": tokenizer_path, "seed": generation.seed}
    kwargs["dtype"] = trained.trained_dtype or "auto"
    if trained.quantization_method == "bnb-4bit":
        kwargs["quantization"] = "bitsandbytes"
    lora = None
    if trained.is_adapter:
        kwargs.update(enable_lora=True, max_lora_rank=int(trained.adapter.get("r") or 16))
        lora = LoRARequest("trained", 1, trained.path)
    llm = LLM(**kwargs)
    params = SamplingParams(
        max_tokens=generation.max_new_tokens,
        temperature=generation.temperature,
        top_p=generation.top_p,
        stop_token_ids=stop_ids,
        seed=generation.seed,
    )

    def answers_of(request: Any) -> Answer:
        def answer(prompts: list[list[int]]) -> list[str]:
            outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, lora_request=request)
            return [o.outputs[0].text.strip() for o in outputs]

        return answer

    return answers_of(lora), answers_of(None)


def completion_logps(
    model: Any, pairs: list[tuple[list[int], list[int]]], batch_size: int, pad: int, context: Optional[int]
) -> tuple[list[float], list[int], int]:
    """(sum of the completion tokens' log-probabilities, completion lengths, rows whose prompt was cut) for each
    (prompt ids, completion ids). A sequence longer than the model's context keeps its completion and the end of
    its prompt."""
    import torch

    cut = 0
    sequences = []
    for prompt, completion in pairs:
        if context is not None and len(prompt) + len(completion) > context:
            keep = max(context - len(completion), 1)
            prompt, completion, cut = prompt[-keep:], completion[: context - keep], cut + 1
        sequences.append((prompt, completion))
    device = _device(model)
    sums: list[float] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, (p, c) in enumerate(batch):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            mask[row, : len(p) + len(c)] = 1
            scored[row, len(p) : len(p) + len(c)] = True
        ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        sums += (logps * scored[:, 1:]).sum(-1).tolist()
    return sums, [len(c) for _, c in sequences], cut


@dataclass
class Outcome:
    metrics: dict[str, float]
    samples: list[dict]
    main: str  # the headline metric


def _win(mine: float, theirs: float) -> float:
    """1 for the higher score, 0 for the lower, a half for a tie."""
    return 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


Answer = Callable[[list[list[int]]], list[str]]  # prompts (token ids) -> generated answers


def exact_match_task(data: TaskData, renderer: Renderer, answer: Answer) -> Outcome:
    generated = answer([renderer.prompt_ids(r.prompt) for r in data.rows])
    samples = []
    for row, text in zip(data.rows, generated):
        first = answers.first_line(text)
        samples.append(
            {
                "prompt": _content(row.prompt),
                "generated": text,
                "answer": first,
                "references": row.references,
                "exact_match": answers.exact_match_score(first, row.references),
                "f1": answers.token_f1(first, row.references),
            }
        )
    metrics = {key: _mean([s[key] for s in samples]) for key in ("exact_match", "f1")}
    return Outcome(metrics, samples, "exact_match")


def preference(data: TaskData, model: Any, renderer: Renderer, settings: Any, context: Optional[int]) -> Outcome:
    """Does the model give the chosen answer a higher log-likelihood than the rejected one? Summed over the answer's
    tokens (what DPO's implicit reward compares, without the reference model), and per token."""
    pairs = []
    for row in data.rows:
        pairs += [renderer.pair_ids(row.prompt, row.chosen), renderer.pair_ids(row.prompt, row.rejected)]
    pad = renderer.tokenizer.pad_token_id or 0
    sums, lengths, cut = completion_logps(model, pairs, settings.batch_size, pad, context)
    samples = []
    for i, row in enumerate(data.rows):
        chosen, rejected = sums[2 * i], sums[2 * i + 1]
        per_token = chosen / max(lengths[2 * i], 1) - rejected / max(lengths[2 * i + 1], 1)
        samples.append(
            {
                "prompt": _content(row.prompt) if row.prompt else "",
                "chosen_logp": chosen,
                "rejected_logp": rejected,
                "margin": chosen - rejected,
                "correct": _win(chosen, rejected),
                "correct_per_token": _win(per_token, 0.0),
            }
        )
    metrics = {
        "accuracy": _mean([s["correct"] for s in samples]),
        "margin": _mean([s["margin"] for s in samples]),
        "accuracy_per_token": _mean([s["correct_per_token"] for s in samples]),
        "chosen_logp": _mean([s["chosen_logp"] for s in samples]),
        "rejected_logp": _mean([s["rejected_logp"] for s in samples]),
    }
    if cut:
        metrics["prompts_cut"] = float(cut)
    return Outcome(metrics, samples, "accuracy")


class Scorer:
    """A reward model and its own tokenizer (and chat template): one score per (prompt, answer)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def scores(self, prompts: list[Messages], answers_: list[str]) -> list[float]:
        import torch

        templated = bool(getattr(self.tokenizer, "chat_template", None))
        texts = []
        for prompt, answer in zip(prompts, answers_):
            turns = prompt + [{"role": "assistant", "content": answer}]
            texts.append(
                self.tokenizer.apply_chat_template(turns, tokenize=False)
                if templated
                else "\n".join(m["content"] for m in turns)
            )
        out: list[float] = []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=not templated,
                ).to(_device(self.model))
                with torch.no_grad():
                    out += self.model(**batch).logits[:, 0].float().tolist()
        finally:
            self.tokenizer.padding_side = side
        return out


def win_rate(data: TaskData, renderer: Renderer, answer: Answer, scorer: Scorer) -> Outcome:
    """The reward model scores the model's answer and the row's reference answer; the model wins when its score is
    higher (a tie counts half)."""
    generated = answer([renderer.prompt_ids(r.prompt) for r in data.rows])
    rewards = scorer.scores([r.prompt for r in data.rows], generated)
    reference = scorer.scores([r.prompt for r in data.rows], [r.references[0] for r in data.rows])
    samples = [
        {
            "prompt": _content(row.prompt),
            "generated": text,
            "reference": row.references[0],
            "reward": mine,
            "reference_reward": theirs,
            "win": _win(mine, theirs),
        }
        for row, text, mine, theirs in zip(data.rows, generated, rewards, reference)
    ]
    metrics = {
        "win_rate": _mean([s["win"] for s in samples]),
        "reward": _mean(rewards),
        "reference_reward": _mean(reference),
    }
    return Outcome(metrics, samples, "win_rate")


def implicit_reward(trained: list[dict], base: list[dict], beta: float) -> dict[str, float]:
    """DPO's implicit reward, with the base as the reference model: beta * (log p_trained - log p_base) of each
    answer. `reward_accuracy`: the share of pairs whose chosen answer gets the higher reward (what TRL's DPO trainer
    logs as rewards/accuracies); `reward_margin`: the mean difference (rewards/margins)."""
    margins = [
        beta * ((t["chosen_logp"] - b["chosen_logp"]) - (t["rejected_logp"] - b["rejected_logp"]))
        for t, b in zip(trained, base)
    ]
    return {"reward_accuracy": _mean([_win(m, 0.0) for m in margins]), "reward_margin": _mean(margins)}


def head_to_head(trained: list[dict], base: list[dict]) -> float:
    """The share of rows where the trained model's answer scores above the base model's (a tie counts half)."""
    return _mean([_win(t["reward"], b["reward"]) for t, b in zip(trained, base)])
