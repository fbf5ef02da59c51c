"""The bounded Jinja sandbox a dataset's SQL template renders in: limits, refusals, and errors with a line.

Jinja's ``ImmutableSandboxedEnvironment`` keeps a template away from Python's internals; this module bounds
what a template may cost and turns every failure into a DLI-205 naming the file and the line:

- a time limit (``[dli] render_timeout_seconds``), checked on every loop iteration, function, macro and
  filter call, operator and output — so nested loops, recursive macros or exponential blow-ups stop;
- a size limit (``[dli] max_rendered_bytes``) on the rendered text and on every value built on the way,
  checked *before* ``'x' * n``, ``~``, ``+``, ``join`` or ``replace`` allocate; ``range`` of at most
  100,000 items, integers of at most 4,096 bits; recursion and memory errors caught;
- no ``{% include %}``/``{% import %}``/``{% extends %}`` (a dataset's SQL is one file) and no
  ``{% filter %}`` blocks (a filter would rewrite SQL text around the values); filters that pad or format
  text (``center``, ``format``, ``indent``…) and ``str.format`` are not available.

Every ``{{ … }}`` output goes through :func:`_finalize`, which hands the value to the render's
:class:`RenderState` and writes its sentinel (:mod:`dli_airflow.sentinels`) — so the rendered text holds
the template's own text and sentinels, never a value. A macro's output is that same kind of text
(:class:`SqlFragment`). Nothing here touches Airflow.
"""

from __future__ import annotations

import functools
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dli_airflow.errors import TemplateError
from dli_airflow.sentinels import Slot, SlotKind, sentinel

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

#: The most items one ``range()`` may have (Jinja's own sandbox limit).
MAX_RANGE = 100_000
#: The largest integer a template may compute, in bits (no SQL engine has a wider integer).
MAX_INT_BITS = 4096
#: The file name compiled templates carry, to find their frames in a traceback.
TEMPLATE_FILENAME = "<dli-sql-template>"
#: Filters a template may use (Jinja's own, without those that pad, format or rewrite text).
ALLOWED_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "groupby", "int", "items",
    "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse",
    "round", "select", "selectattr", "sort", "string", "sum", "title", "trim", "truncate", "unique", "upper",
    "wordcount",
)
#: Tags a dataset's SQL cannot use, and what to do instead.
_REFUSED_TAGS = {
    "Include": ("{% include %}", "a dataset's SQL is one file: put the SQL here, or define a {% macro %} in this file"),
    "Import": ("{% import %}", "a dataset's SQL is one file: define the {% macro %} in this file"),
    "FromImport": ("{% from … import %}", "a dataset's SQL is one file: define the {% macro %} in this file"),
    "Extends": ("{% extends %}", "a dataset's SQL is one file: write the whole query here"),
    "FilterBlock": ("a {% filter %} block", "apply the filter to a value instead: {{ name | upper }}"),
}
#: ``str`` methods that pad or format text to a width the template chooses.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class SqlFragment(str):
    """SQL text the template itself wrote (a macro's output): its own text and sentinels, never a value."""


@dataclass(frozen=True)
class RenderLimits:
    """What one render may cost.

    :param seconds: wall-clock time (``[dli] render_timeout_seconds``)
    :param max_bytes: characters of the rendered SQL and of any value built on the way
        (``[dli] max_rendered_bytes``)
    """

    seconds: float = 10.0
    max_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_config(cls) -> RenderLimits:
        """The limits of ``[dli] render_timeout_seconds`` and ``[dli] max_rendered_bytes``."""
        from dli_airflow import config

        return cls(config.render_timeout_seconds(), config.max_rendered_bytes())


class RenderLimitError(Exception):
    """A render went past a limit or used what is not allowed (becomes a DLI-205 with the line).

    :param hint: what to do instead
    """

    def __init__(self, message: str, hint: str = "fix the SQL template at the line shown") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class RenderState:
    """One render: its nonce, the values it produced (by sentinel number), its budget."""

    limits: RenderLimits
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    slots: list[Slot] = field(default_factory=list)
    template: Any = None
    deadline: float = 0.0
    size: int = 0

    def tick(self) -> None:
        """Stop when the render is past its time."""
        if time.monotonic() > self.deadline:
            raise RenderLimitError(
                f"rendering the SQL took longer than {self.limits.seconds:g} s ([dli] render_timeout_seconds)",
                hint="loop over fewer items (a loop inside a loop multiplies), or raise [dli] render_timeout_seconds",
            )

    def check_size(self, size: int, what: str) -> None:
        """Stop before ``what`` of ``size`` characters is built past the size limit."""
        if size > self.limits.max_bytes:
            raise RenderLimitError(
                f"{what} would be {size:,} characters; the limit is {self.limits.max_bytes:,} "
                "([dli] max_rendered_bytes)",
                hint="build less text in the template, or raise [dli] max_rendered_bytes",
            )

    def emit(self, kind: SlotKind, value: Any) -> str:
        """Keep a value and return the sentinel that stands for it in the SQL."""
        from dli_airflow.bind import check_value

        if kind == "value":
            check_value(value)
            if isinstance(value, str) and f"__dli{self.nonce}_" in value:
                raise TemplateError(
                    "the output of a {% set %} block or of a macro is used as a value",
                    hint="output a macro directly ({{ my_macro() }}) and write values with {{ name }}",
                )
        self.size += _value_size(value)
        self.check_size(self.size, "the rendered SQL with its values")
        self.slots.append(Slot(kind, value, _template_line(self.template)))
        return sentinel(self.nonce, len(self.slots) - 1)


def _value_size(value: Any) -> int:
    """About the characters a value takes as a literal (its display, the client's ``USING``): a list counts
    its items, so ``{{ [big] * n }}`` is bounded like ``{{ big * n }}``."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, (list, tuple)):
        return sum(_value_size(item) for item in value) + 2
    return 32


_STATE: ContextVar[RenderState | None] = ContextVar("dli_render_state", default=None)


def _state() -> RenderState:
    state = _STATE.get()
    if state is None:
        raise RenderLimitError("a dataset's SQL template renders only through dli's renderer")
    state.tick()
    return state


def _template_line(template: Any) -> int | None:
    """The template line of the innermost template frame on the stack (the output being written)."""
    frame = sys._getframe(2)
    for _ in range(30):
        if frame is None:
            return None
        if frame.f_globals.get("__jinja_template__") is template and template is not None:
            return template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back
    return None


# -- the environment ------------------------------------------------------------------------------------------


def _finalize_value(context: Any, value: Any) -> str:
    from jinja2 import Undefined

    if isinstance(value, SqlFragment):
        return value
    if isinstance(value, Undefined):
        return str(value)  # StrictUndefined raises UndefinedError, naming the missing variable
    return _state().emit("value", value)


def _identifier(value: Any) -> SqlFragment:
    from dli_airflow.bind import sql_identifier

    sql_identifier(value)  # refuse an empty name at its line
    return SqlFragment(_state().emit("identifier", str(value)))


def _literal(value: Any) -> SqlFragment:
    from dli_airflow.bind import check_value

    check_value(value)
    return SqlFragment(_state().emit("literal", value))


def _range(*args: int) -> range:
    _state()
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = sys.maxsize
    if size > MAX_RANGE:
        shown = ", ".join(map(str, args))
        raise RenderLimitError(f"range({shown}) has {size:,} items; the limit is {MAX_RANGE:,}",
                               hint="loop over fewer items")
    return numbers


def _loop(items: Iterable[Any]) -> Iterator[Any]:
    state = _state()
    for item in items:
        state.tick()
        yield item


def _concat(parts: Iterable[Any]) -> str:
    state = _state()
    texts = [str(p) for p in parts]
    state.check_size(sum(map(len, texts)), "the text built with ~")
    return "".join(texts)


def _check_result(state: RenderState, result: Any) -> Any:
    if isinstance(result, (str, list, tuple, dict)):
        state.check_size(len(result), "a value")
    elif isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise RenderLimitError(f"a number of {result.bit_length():,} bits; the limit is {MAX_INT_BITS:,}")
    return result


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter with the time checked before and the size after; ``join``/``replace`` checked before."""

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        state = _state()
        values = [a for a in args if not _is_jinja_context(a)]
        if name == "join" and values and "attribute" not in kwargs:
            items = list(values[0])
            sep = str(values[1] if len(values) > 1 else kwargs.get("d", ""))
            state.check_size(sum(len(str(i)) for i in items) + len(sep) * max(len(items) - 1, 0), "the joined text")
            args = (*args[: len(args) - len(values)], items, *values[1:])
        elif name == "replace" and len(values) >= 3:
            _check_replace(state, str(values[0]), str(values[1]), str(values[2]), values[3] if len(values) > 3 else None)
        return _check_result(state, function(*args, **kwargs))

    return bounded


def _is_jinja_context(value: Any) -> bool:
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context

    return isinstance(value, (EvalContext, Context))


def _check_replace(state: RenderState, text: str, old: str, new: str, count: Any) -> None:
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    state.check_size(len(text) + times * (len(new) - len(old)), "the replaced text")


def _check_binop(state: RenderState, operator: str, left: Any, right: Any) -> None:
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if operator == "*":
        sequence, times = (left, right) if is_int(right) else (right, left)
        if isinstance(sequence, (str, list, tuple)) and is_int(times):
            shown = repr(sequence)[:20]
            state.check_size(len(sequence) * max(times, 0), f"the text {shown} * {times}")
        elif is_int(left) and is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"a product of more than {MAX_INT_BITS:,} bits")
    elif operator == "**" and is_int(left) and is_int(right) and abs(left) > 1 and right > 0:
        if right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
            raise RenderLimitError(f"{left} ** {right} has more than {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        raise RenderLimitError("text formatting with % is not available in a SQL template; build text with ~")
    elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        state.check_size(len(left) + len(right), "the text built with +")


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one bounded sandbox (values become sentinels, so nothing here depends on the engine)."""
    from jinja2 import StrictUndefined, pass_context
    from jinja2.runtime import Macro
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """Jinja's immutable sandbox with time and size checked on every call, operator and loop step."""

        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            state = _state()
            _check_binop(state, operator, left, right)
            return _check_result(state, super().call_binop(context, operator, left, right))

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            # str.format pads to widths the template chooses ('{:>1000000000}'): not available at all
            if super().wrap_str_format(value) is None:
                return None

            def refused(*args: Any, **kwargs: Any) -> str:
                raise RenderLimitError("str.format is not available in a SQL template; build text with ~")

            return refused

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            state = _state()
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, str):
                method = getattr(obj, "__name__", "")
                if method in ("format", "format_map"):
                    raise RenderLimitError("str.format is not available in a SQL template; build text with ~")
                if method in _WIDTH_METHODS and any(isinstance(a, int) and a > state.limits.max_bytes for a in args):
                    raise RenderLimitError(f"{method}() to more than {state.limits.max_bytes:,} characters")
                if method == "expandtabs":
                    state.check_size(len(owner) * int(args[0] if args else 8), "the expanded text")
                if method == "join" and args:
                    items = list(args[0])
                    state.check_size(sum(len(str(i)) for i in items) + len(owner) * len(items), "the joined text")
                    args = (items, *args[1:])
                if method == "replace" and len(args) >= 2:
                    _check_replace(state, owner, str(args[0]), str(args[1]), args[2] if len(args) > 2 else None)
            result = _check_result(state, super().call(context, obj, *args, **kwargs))
            if isinstance(obj, Macro) and isinstance(result, str):
                return SqlFragment(result)
            return result

    env = BoundedSandbox(undefined=StrictUndefined, finalize=pass_context(_finalize_value), autoescape=False,
                         keep_trailing_newline=True)
    env.filters = {name: _bounded_filter(name, env.filters[name]) for name in ALLOWED_FILTERS}
    env.filters["identifier"] = _identifier
    env.filters["literal"] = _literal
    env.globals = {k: v for k, v in env.globals.items() if k in ("dict", "cycler", "joiner", "namespace")}
    env.globals.update(range=_range, _dli_loop=_loop, _dli_concat=_concat)
    return env


# -- parse, check, compile ------------------------------------------------------------------------------------


def parse(source: str, path: str) -> nodes.Template:
    """The template's syntax tree.

    :raises TemplateError: a syntax error (with its line), or a template nested too deeply to parse
    """
    from jinja2.exceptions import TemplateSyntaxError

    try:
        return environment().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"{path}:{exc.lineno}: SQL template syntax error: {exc.message}",
            hint="check the {{ }} and {% %} pairs",
        ) from None
    except RecursionError:
        raise TemplateError(f"{path}: the SQL template nests too deeply to read", hint="flatten the template") from None


def refusal(node: nodes.Node, path: str) -> TemplateError | None:
    """The error for a node a dataset's SQL cannot use (``None``: it may)."""
    from jinja2 import nodes

    refused = _REFUSED_TAGS.get(type(node).__name__)
    if refused is not None:
        what, hint = refused
        return TemplateError(f"{path}:{node.lineno}: {what} is not supported in a dataset's SQL", hint=hint)
    name = node.name if isinstance(node, (nodes.Name, nodes.Filter, nodes.Test)) else None
    if isinstance(name, str) and name.startswith("_dli"):
        return TemplateError(f"{path}:{node.lineno}: the name {name!r} is reserved by dli", hint="rename it")
    return None


@functools.lru_cache(maxsize=128)
def _compiled(source: str) -> Any:
    """The template compiled with every loop and ``~`` bounded (cached: a task renders it twice)."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    env = environment()
    tree = env.parse(source)
    for node in tree.find_all(nodes.Node):
        error = refusal(node, "")
        if error is not None:
            raise error

    class Bounded(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            node.iter = nodes.Call(nodes.Name("_dli_loop", "load"), [node.iter], [], None, None, lineno=node.lineno)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            items = nodes.List(list(node.nodes), lineno=node.lineno)
            return nodes.Call(nodes.Name("_dli_concat", "load"), [items], [], None, None, lineno=node.lineno)

    tree = Bounded().visit(tree)
    tree.set_environment(env)
    code = env.compile(tree, filename=TEMPLATE_FILENAME)
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render_with_sentinels(
    source: str, values: Mapping[str, Any], *, path: str, limits: RenderLimits | None = None
) -> tuple[str, RenderState]:
    """Render a template within its limits: the text (a sentinel for every output) and the values kept.

    :param values: the run's validated parameters (also as ``params``)
    :param limits: default ``[dli] render_timeout_seconds`` and ``max_rendered_bytes``
    :raises TemplateError: any failure, as a DLI-205 naming ``path`` and the line
    """
    from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

    state = RenderState(limits or RenderLimits.from_config())
    state.deadline = time.monotonic() + state.limits.seconds
    try:
        template = _compiled(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{path}:{exc.lineno}: SQL template syntax error: {exc.message}") from None
    except TemplateError as exc:
        raise TemplateError(f"{path}{exc.message}", hint=exc.hint) from None
    except RecursionError:
        raise TemplateError(f"{path}: the SQL template nests too deeply to read", hint="flatten the template") from None
    while state.nonce in source:  # no template may hold the sentinels' nonce
        state.nonce = secrets.token_hex(4)
    state.template = template
    context = dict(values)
    context["params"] = dict(values)
    token = _STATE.set(state)
    parts: list[str] = []
    chunks = template.generate(context)
    try:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            state.check_size(size, "the rendered SQL")
            state.tick()
            parts.append(chunk)
    except UndefinedError as exc:
        raise _error(exc, path, template, exc.message or str(exc), "declare the name under parameters") from None
    except SecurityError as exc:
        raise _error(exc, path, template, f"not allowed in a SQL template: {exc}") from None
    except (TemplateError, RenderLimitError) as exc:
        message = exc.message if isinstance(exc, TemplateError) else str(exc)
        raise _error(exc, path, template, message, getattr(exc, "hint", None), chunks) from None
    except RecursionError as exc:
        raise _error(exc, path, template, "the template recurses without end",
                     "a macro that calls itself needs a condition that stops it") from None
    except MemoryError as exc:
        raise _error(exc, path, template, "rendering the SQL ran out of memory") from None
    except Exception as exc:  # noqa: BLE001 - any other failure of a template is the template's: a DLI-205
        raise _error(exc, path, template, f"cannot render the SQL: {type(exc).__name__}: {exc}") from None
    finally:
        chunks.close()
        _STATE.reset(token)
    return "".join(parts), state


def _error(
    exc: BaseException, path: str, template: Any, message: str, hint: str | None = None, chunks: Any = None
) -> TemplateError:
    """A DLI-205 naming the file and the template line the failure happened on.

    :param chunks: the render's generator, for a limit found between two of its outputs (its line then)
    """
    line = _suspended_line(chunks, template)
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        elif frame.f_globals.get("__jinja_template__") is template:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    at = f"{path}:{line}" if line else path
    return TemplateError(f"{at}: {message}", hint=hint or "fix the SQL template at the line shown")


def _suspended_line(chunks: Any, template: Any) -> int | None:
    """The template line a suspended render generator stands at (``None``: not suspended there)."""
    generator = getattr(chunks, "gi_yieldfrom", None)
    while generator is not None:
        frame = getattr(generator, "gi_frame", None)
        if frame is not None and frame.f_globals.get("__jinja_template__") is template:
            return template.get_corresponding_lineno(frame.f_lineno)
        generator = getattr(generator, "gi_yieldfrom", None)
    return None


__all__ = [
    "ALLOWED_FILTERS",
    "MAX_INT_BITS",
    "MAX_RANGE",
    "RenderLimitError",
    "RenderLimits",
    "RenderState",
    "SqlFragment",
    "environment",
    "parse",
    "refusal",
    "render_with_sentinels",
]
