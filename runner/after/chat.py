"""`recipe chat OUTPUT_DIR|MODEL`: talk to a trained model in the terminal, tokens streamed as they come.

An adapter directory is loaded through its base model the way it was trained (a QLoRA run's base in
4-bit when bitsandbytes is installed). The conversation goes through the tokenizer's chat template (the
one training saved beside the adapter); a model without a chat template continues plain text instead.
With `--prompt TEXT`, or text on standard input, it answers once and exits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO

from runner.common.models import stop_token_ids
from runner.common.trained import OutputError, open_model

HELP = "/reset starts a new conversation, Ctrl-C stops an answer, /exit (or Ctrl-D) leaves"


def _streamer(tokenizer, out: TextIO):
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        """Writes each finished piece of text to `out` as soon as it is decoded."""

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


@dataclass
class Chat:
    """A conversation with one model: the history, and generation settings."""

    model: Any
    tokenizer: Any
    system: Optional[str] = None
    max_new_tokens: int = 256
    temperature: float = 0.7
    history: list[dict] = field(default_factory=list)
    trimmed: int = 0  # earlier turns dropped to fit the context window

    @property
    def templated(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def reset(self) -> None:
        self.history, self.trimmed = [], 0

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def prompt_text(self) -> str:
        """What the model is given: the conversation through the chat template, or the plain text."""
        if self.templated:
            return self.tokenizer.apply_chat_template(self.messages(), tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in self.history)

    def _encode(self):
        limit = getattr(self.model.config, "max_position_embeddings", None)
        while True:
            ids = self.tokenizer(self.prompt_text(), return_tensors="pt", add_special_tokens=not self.templated)[
                "input_ids"
            ]
            if limit is None or ids.shape[-1] + self.max_new_tokens <= limit or len(self.history) <= 1:
                return ids
            self.history = self.history[2:]  # the oldest exchange goes first
            self.trimmed += 1

    def reply(self, text: str, out: TextIO, show: Optional[Callable[[str], None]] = None) -> str:
        """Answer `text`, streaming to `out`; the answer joins the history. `show` receives the prompt text."""
        import torch

        self.history.append({"role": "user", "content": text})
        ids = self._encode()
        if show is not None:
            show(self.prompt_text())
        device = next(self.model.parameters()).device
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "eos_token_id": stop_token_ids(self.tokenizer),
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            generated = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=torch.ones_like(ids).to(device),
                streamer=_streamer(self.tokenizer, out),
                **kwargs,
            )
        answer = self.tokenizer.decode(generated[0, ids.shape[-1] :], skip_special_tokens=True).strip()
        self.history.append({"role": "assistant", "content": answer})
        return answer


def interactive(chat: Chat, out: TextIO, log: Callable[[str], None], show: Optional[Callable[[str], None]]) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    log(HELP)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            out.write("\n")
            return
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            chat.reset()
            log("(new conversation)")
            continue
        out.write("model> ")
        out.flush()
        before = chat.trimmed
        try:
            chat.reply(text, out, show)
        except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
            chat.history = chat.history[:-1] if chat.history and chat.history[-1]["role"] == "user" else chat.history
            out.write("\n")
            log("(interrupted; the question was dropped from the conversation)")
            continue
        if chat.trimmed > before:
            log(f"(the oldest {chat.trimmed} exchange(s) no longer fit the context window and were dropped)")


def main(args, stdin: Optional[TextIO] = None, out: Optional[TextIO] = None) -> int:
    stdin, out = stdin or sys.stdin, out or sys.stdout  # looked up per call: a caller may have replaced sys.stdin

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.max_new_tokens < 1:
        raise OutputError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1")
    if args.temperature < 0:
        raise OutputError(f"--temperature {args.temperature}: must be 0 (greedy) or more")
    once = args.prompt
    if once is None and not stdin.isatty():
        once = stdin.read().strip()
        if not once:
            raise OutputError("standard input is empty: give the message with --prompt TEXT or pipe it in")
    model, tokenizer, trained = open_model(
        args.model, base=args.base, trust_remote_code=args.trust_remote_code, device=args.device, log=log
    )
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    chat = Chat(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    if not chat.templated:
        log(f"{trained.path}: the tokenizer has no chat template; the model continues your text as plain text")
    show = (lambda text: log(f"--- prompt as the model sees it ---\n{text}\n---")) if args.show_prompt else None
    if once is not None:
        chat.reply(once, out, show)
        return 0
    interactive(chat, out, log, show)
    return 0
