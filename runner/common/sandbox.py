"""Chat templates rendered first in a limited sandbox, so a hostile or broken template is refused with one line.

A chat template is Jinja code from a model repository or a recipe's `.jinja` file: untrusted. transformers renders
it in jinja2's ImmutableSandboxedEnvironment, which stops attribute escapes but not resource use: `"A" * 10**9`
allocates gigabytes, a range of 10**12 raises OverflowError, a `SecurityError` or a template's own
`raise_exception` is a traceback. Wherever the parent renders a template (the data check's token statistics,
`recipe data --template`, the preflight), it renders it here first, with the same inputs, in the same kind of
environment (the same globals, filters and `{% generation %}` tag) with limits: on the output's size, on the size of
what `*`, `**`, `+`, `%`, filters, calls and namespaces make, on ranges and calls per render, and on time (in the
main thread). What fails here is refused as `TemplateRefused`; what passes renders the same way in transformers.

The training process renders templates with transformers' own sandbox; a template the preflight refuses is never
launched.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterator, Optional

MAX_OUTPUT = 16 * 2**20  # characters of one rendering (a row is at most datasets.max_row_bytes)
MAX_RANGE = 10_000  # items of one range()
MAX_STEPS = 1_000_000  # range items and calls in one rendering
MAX_SECONDS = 5.0  # one rendering, in the main thread
_WIDTH = re.compile(r"\d{5,}")  # a field width or precision of 10,000 or more in a format string


class TemplateRefused(ValueError):
    """A chat template that fails, or goes past a limit, when rendered in the sandbox."""


class _Budget(threading.local):
    steps = 0


_BUDGET = _Budget()


def _spend(n: int = 1) -> None:
    _BUDGET.steps += n
    if _BUDGET.steps > MAX_STEPS:
        raise TemplateRefused(f"the template runs more than {MAX_STEPS:,} steps (loop items and calls)")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > MAX_OUTPUT:
        raise TemplateRefused(f"{what} makes a value of {_size(value):,} items, over the limit of {MAX_OUTPUT:,}")
    return value


def _limited_range(*args: Any) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise TemplateRefused(f"range() of {len(r):,} items; the limit is {MAX_RANGE:,}")
    _spend(len(r))
    return r


def _operand_size(left: Any, right: Any, operator: str) -> int:
    """The size of what `left OPERATOR right` would make, estimated before it is made."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(n, int) and _size(seq):
                return _size(seq) * max(n, 0)
        return 0
    if operator == "+":
        return _size(left) + _size(right)
    if operator == "%" and isinstance(left, str):
        return MAX_OUTPUT + 1 if _WIDTH.search(left) else 0
    return 0


@lru_cache(maxsize=32)
def _compiled(text: str) -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` as transformers reads it (here it marks nothing)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    class Limited(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(("*", "**", "+", "%"))

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 256 and _size(left) == 0:
                raise TemplateRefused(f"`{left!r} ** {right!r}`: an exponent over 256")
            if _operand_size(left, right, operator) > MAX_OUTPUT:
                raise TemplateRefused(f"`{operator}` would make a value over the limit of {MAX_OUTPUT:,} items")
            return _check_size(super().call_binop(context, operator, left, right), f"`{operator}`")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _spend()
            for value in (*args, *kwargs.values()):
                _check_size(value, "a call's argument")
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT:
                    raise TemplateRefused(f"a call with the number {value:,}, over the limit of {MAX_OUTPUT:,}")
            method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            if isinstance(getattr(method, "__self__", None), str) and _WIDTH.search(method.__self__):
                raise TemplateRefused("a string method called on a format with a field width over 9,999")
            return _check_size(super().call(__context, __obj, *args, **kwargs), "a call")

    env = Limited(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    for name in ("center", "indent", "wordwrap", "truncate", "format", "replace", "join", "batch", "slice", "list"):
        env.filters[name] = _limited_filter(env.filters[name], name)
    env.filters["tojson"] = _tojson
    env.globals.update(
        range=_limited_range,
        raise_exception=_raise_exception,
        strftime_now=lambda fmt: datetime.now().strftime(fmt),
        dict=lambda *a, **k: _check_size(dict(*a, **k), "dict()"),
        namespace=_namespace_class(),
    )
    return env.from_string(text)


def _limited_filter(fn: Any, name: str) -> Any:
    import functools

    @functools.wraps(fn)
    def limited(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT:
                raise TemplateRefused(f"the `{name}` filter with the number {value:,}, over the limit")
            if name == "format" and isinstance(value, str) and _WIDTH.search(value):
                raise TemplateRefused("the `format` filter with a field width over 9,999")
        return _check_size(fn(*args, **kwargs), f"the `{name}` filter")

    return limited


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False):
    if isinstance(indent, int) and indent > 16:
        raise TemplateRefused(f"tojson(indent={indent}): an indent over 16")
    text = json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    return _check_size(text, "tojson")


def _raise_exception(message: Any) -> None:
    raise TemplateRefused(f"the template raises: {message}")


def _namespace_class() -> Any:
    import jinja2.utils

    class Namespace(jinja2.utils.Namespace):
        """transformers' namespace (no underscore names), refusing values over the size limit."""

        def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 (Jinja's own signature trick)
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name, value in attrs.items():
                Namespace._check(name, value)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            Namespace._check(name, value)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any, value: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise TemplateRefused(f"the template stores the underscore name {name!r} on a namespace")
            _check_size(value, "a namespace value")

    return Namespace


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """TemplateRefused after `seconds` (a timer signal: only in the main thread; elsewhere, no time limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TemplateRefused(f"the template takes more than {seconds:g} s to render one conversation")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_limited(text: str, messages: Any, add_generation_prompt: bool = False, **variables: Any) -> str:
    """The template rendered in the limited sandbox; TemplateRefused (one line) when it fails or goes past a limit."""
    import jinja2

    _BUDGET.steps = 0
    out: list[str] = []
    size, started = 0, time.monotonic()
    try:
        with _deadline(MAX_SECONDS):
            template = _compiled(text)
            for chunk in template.generate(messages=messages, add_generation_prompt=add_generation_prompt, **variables):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateRefused(f"the rendering is longer than {MAX_OUTPUT:,} characters")
                if time.monotonic() - started > MAX_SECONDS:
                    raise TemplateRefused(f"the template takes more than {MAX_SECONDS:g} s to render")
                out.append(chunk)
    except TemplateRefused:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRefused(f"invalid Jinja at line {exc.lineno} of the template: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateRefused(f"the template does what the sandbox forbids: {_one_line(exc)}") from None
    except RecursionError:
        raise TemplateRefused("the template recurses too deeply") from None
    except MemoryError:
        raise TemplateRefused("the template needs more memory than there is") from None
    except Exception as exc:  # a template is code: any error it raises is its own
        raise TemplateRefused(f"the template fails: {type(exc).__name__}: {_one_line(exc)}") from None
    return "".join(out)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def tokenizer_template(tokenizer: Any) -> Optional[str]:
    """The template text transformers would render for `tokenizer` (None when it has none)."""
    try:
        return tokenizer.get_chat_template()
    except ValueError:
        return None


def check_render(tokenizer: Any, messages: Any, add_generation_prompt: bool = False) -> None:
    """Render `messages` as tokenizer.apply_chat_template would, in the limited sandbox first; TemplateRefused
    when the template fails there. Call it before each parent-side apply_chat_template."""
    text = tokenizer_template(tokenizer)
    if text is None:
        return
    render_limited(text, messages, add_generation_prompt, **getattr(tokenizer, "special_tokens_map", {}))


SAMPLE = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Question?"},
    {"role": "assistant", "content": "Answer."},
]


def template_refusal(tokenizer: Any) -> Optional[str]:
    """Why the tokenizer's template cannot render a short conversation in the sandbox, or None when it can."""
    try:
        check_render(tokenizer, SAMPLE)
        check_render(tokenizer, SAMPLE[1:2], add_generation_prompt=True)
    except TemplateRefused as exc:
        return str(exc)
    return None
