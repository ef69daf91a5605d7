"""The personalization sandbox: Jinja's immutable sandbox, with a budget on the work one render may do.

Jinja's sandbox keeps templates away from Python internals, not from exhausting the API function:
nested loops, doubling a string with ``~`` or widening it with ``center``, ``format`` or ``replace``
cost seconds and gigabytes while the output stays small. So every render gets a budget
(``RENDER_STEPS`` steps, ``RENDER_CHARS`` characters built, ``RENDER_SECONDS`` of wall time), and the
template is compiled so that it draws on it:

- every loop iteration (and every item a loop's ``if`` looks at) is a step, every call, filter and
  operator is a step, and the clock is read at each step;
- every value a filter, call, operator or ``~`` builds, and every piece of output (macro and block
  bodies included), is charged by its length, and no value may exceed ``MAX_VALUE_LENGTH`` characters
  (a list: as text) or ``MAX_ITEMS`` items;
- what can multiply its input (``*``, ``**``, ``replace``, ``join``, ``center``, ``indent``,
  ``wordwrap``, ``batch``, ``slice``, widths in ``format`` and ``%``, ``str`` methods that pad) is
  refused *before* it runs when its result would be too large, and ``range`` stops at ``MAX_RANGE``.

Running out raises ``RenderBudgetExceeded`` (a SecurityError), which the renderer reports as
``InvalidContent`` (422) in a fraction of a second.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

MAX_VALUE_LENGTH = 100_000  # characters of any one value a template builds
MAX_ITEMS = 10_000  # items of any one list, tuple or mapping a template builds
MAX_RANGE = 10_000
MAX_EXPONENT = 64
MAX_INT_BITS = 4_096
MAX_RENDERED_LENGTH = 2_000_000  # content is at most 350 KB; personalization may add, not multiply
RENDER_STEPS = 50_000  # loop iterations, calls, filters and operators in one render
RENDER_CHARS = 8_000_000  # characters built or output in one render, intermediate values included
RENDER_SECONDS = 0.25
# All the renders of one API call (up to 1,000 recipients): well inside the function's 29 s timeout, so a
# template that is heavy only with some recipients' fields is a 422, never a timed-out call.
CALL_RENDER_SECONDS = 10.0
# Filters whose cost grows fast with their input: their input is held to MAX_ITEMS characters or items.
_COSTLY_FILTERS = frozenset({"wordwrap", "pprint", "sort", "dictsort", "unique", "groupby"})
_LONG_NUMBER = re.compile(r"[0-9]{6}")  # a width or precision of 100,000 or more


class RenderBudgetExceeded(SecurityError):
    """The render did more work, or built larger values, than any personalization needs."""


class RenderBudget:
    def __init__(self) -> None:
        self.steps = RENDER_STEPS
        self.chars = RENDER_CHARS
        self.deadline = time.monotonic() + RENDER_SECONDS
        call_deadline = _call_deadline.get()
        self.call_deadline = call_deadline if call_deadline is not None else self.deadline

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise RenderBudgetExceeded(
                f"the template does more than {RENDER_STEPS:,} loop iterations, calls and operations"
            )
        now = time.monotonic()
        if now > self.deadline:
            raise RenderBudgetExceeded(f"personalizing one message took more than {RENDER_SECONDS} s")
        if now > self.call_deadline:
            raise RenderBudgetExceeded(
                f"personalizing the messages of one request took more than {CALL_RENDER_SECONDS:g} s;"
                " send fewer recipients per request"
            )

    def charge(self, value: Any, *, capped: bool = True) -> Any:
        """Count what a value costs; refuse it if it is too large (``capped``). Returns the value."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                raise RenderBudgetExceeded(f"numbers above {MAX_INT_BITS} bits are not allowed")
            return value
        if isinstance(value, str):
            if capped:
                _check_length(len(value))
            self.chars -= len(value)
        elif isinstance(value, list | tuple | dict | set | frozenset):
            _check_items(len(value))
            length = _text_length(value)  # ["x" * 99999] * 10000 is short, its text is not
            _check_length(length)
            self.chars -= length
        if self.chars < 0:
            raise RenderBudgetExceeded(
                f"the template builds more than {RENDER_CHARS:,} characters for one message"
            )
        return value


_current: ContextVar[RenderBudget | None] = ContextVar("msgtrack_render_budget", default=None)
_call_deadline: ContextVar[float | None] = ContextVar("msgtrack_call_render_deadline", default=None)


@contextmanager
def call_render_budget() -> Iterator[None]:
    """One deadline shared by every render inside this block (one API call's messages)."""
    token = _call_deadline.set(time.monotonic() + CALL_RENDER_SECONDS)
    try:
        yield
    finally:
        _call_deadline.reset(token)


@contextmanager
def render_budget() -> Iterator[RenderBudget]:
    """A fresh budget for the render run inside this block."""
    budget = RenderBudget()
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def _budget() -> RenderBudget:
    budget = _current.get()
    if budget is None:
        raise RenderBudgetExceeded("templates are rendered only within a render budget")
    return budget


def _check_length(length: int) -> None:
    if length > MAX_VALUE_LENGTH:
        raise RenderBudgetExceeded(
            f"a value of {length:,} characters; the template may build at most {MAX_VALUE_LENGTH:,}"
        )


def _text_length(value: Any, limit: int = MAX_VALUE_LENGTH) -> int:
    """About how many characters ``value`` makes as text (str, join, tojson), counted to just past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        items: Iterable[Any] = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 8
    total = 2
    for item in items:
        total += 2 + _text_length(item, limit - total)
        if total > limit:
            break
    return total


def _check_items(count: int) -> None:
    if count > MAX_ITEMS:
        raise RenderBudgetExceeded(f"a list of {count:,} items; the template may build at most {MAX_ITEMS:,}")


# ---------------------------------------------------------------------------------------------------
# Checks made before an operation that can multiply its input


def _check_format_string(template: str, *, percent: bool) -> None:
    if _LONG_NUMBER.search(template):
        raise RenderBudgetExceeded("widths and precisions of 100,000 or more are not allowed")
    if percent and "*" in template:
        raise RenderBudgetExceeded("'*' widths in %-formatting are not allowed")
    if not percent:
        depth = 0
        for char in template.replace("{{", "").replace("}}", ""):
            depth += (char == "{") - (char == "}")
            if depth > 1:
                raise RenderBudgetExceeded("nested replacement fields in format strings are not allowed")


def _check_replace(text: str, old: str, new: str, count: int = -1) -> None:
    found = len(text) + 1 if old == "" else text.count(old)
    if count >= 0:
        found = min(found, count)
    _check_length(len(text) + found * max(0, len(new) - len(old)))


def _check_join(items: Any, separator: str) -> None:
    if isinstance(items, Sized):
        _check_length(max(0, len(items) - 1) * len(separator) + _text_length(items))


def _materialized(items: Any) -> Any:
    """A lazy sequence (``map``, ``select``...) as a list of at most MAX_VALUE_LENGTH items, so that
    what joins it can be sized first."""
    if isinstance(items, Sized) or not isinstance(items, Iterable):
        return items
    found = list(itertools.islice(items, MAX_VALUE_LENGTH + 1))
    _check_length(len(found))
    return found


def _check_width(width: Any) -> None:
    if isinstance(width, int):
        _check_length(width)


def _check_lines(text: str, per_line: Any) -> None:
    width = len(per_line) if isinstance(per_line, str) else per_line if isinstance(per_line, int) else 0
    _check_length(len(text) + (text.count("\n") + 1) * max(0, width))


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``args`` start with the filtered value."""
    value = args[0] if args else None
    if name in _COSTLY_FILTERS and isinstance(value, Sized) and len(value) > MAX_ITEMS:
        raise RenderBudgetExceeded(f"the {name} filter takes at most {MAX_ITEMS:,} characters or items")
    if name == "replace" and isinstance(value, str):
        old, new = _argument(args, kwargs, 1, "old"), _argument(args, kwargs, 2, "new")
        count = _argument(args, kwargs, 3, "count")
        if isinstance(old, str) and isinstance(new, str):
            _check_replace(value, old, new, count if isinstance(count, int) else -1)
    elif name == "join":
        separator = _argument(args, kwargs, 1, "d")
        _check_join(value, separator if isinstance(separator, str) else "")
    elif name == "center":
        _check_width(_argument(args, kwargs, 1, "width"))
    elif name == "indent" and isinstance(value, str):
        _check_lines(value, _argument(args, kwargs, 1, "width"))
    elif name == "wordwrap" and isinstance(value, str):
        wrapstring = _argument(args, kwargs, 4, "wrapstring")
        width = _argument(args, kwargs, 1, "width")
        if isinstance(wrapstring, str) and isinstance(width, int) and width > 0:
            _check_length(len(value) + (len(value) // width + 1) * len(wrapstring))
    elif name in ("batch", "slice"):
        _check_items(abs(_argument(args, kwargs, 1, "linecount" if name == "batch" else "slices") or 0))
    elif name == "format" and isinstance(value, str):
        _check_format_string(value, percent=True)


_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Methods of ``str`` (and ``format`` wrapped by the sandbox) that can multiply the string."""
    wrapped = getattr(method, "__wrapped__", method)  # the sandbox wraps str.format / format_map
    receiver = getattr(wrapped, "__self__", None)
    if not isinstance(receiver, str):
        return
    name = getattr(wrapped, "__name__", "")
    if name in _PADDING_METHODS:
        _check_width(_argument(args, kwargs, 0, "width"))
    elif name == "expandtabs":
        _check_lines(receiver.replace("\t", "\n"), _argument(args, kwargs, 0, "tabsize") or 8)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_replace(receiver, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        _check_join(args[0], receiver)
    elif name in ("format", "format_map"):
        _check_format_string(receiver, percent=False)
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _check_length(len(receiver) * longest)


def _repeated_length(left: Any, right: Any) -> int:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            return len(sequence) * count
    return 0


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        _check_length(_repeated_length(left, right))
        both_int = isinstance(left, int) and isinstance(right, int)
        if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderBudgetExceeded(f"numbers above {MAX_INT_BITS} bits are not allowed")
    elif operator == "**" and isinstance(right, int):
        if abs(right) > MAX_EXPONENT:
            raise RenderBudgetExceeded(f"exponents above {MAX_EXPONENT} are not allowed")
        if isinstance(left, int) and left.bit_length() * abs(right) > MAX_INT_BITS:
            raise RenderBudgetExceeded(f"numbers above {MAX_INT_BITS} bits are not allowed")
    elif operator == "%" and isinstance(left, str):
        _check_format_string(left, percent=True)


# ---------------------------------------------------------------------------------------------------
# The environment


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderBudgetExceeded(f"range() gives at most {MAX_RANGE:,} numbers in a template")
    return numbers


def _no_lipsum(*args: Any, **kwargs: Any) -> str:
    raise RenderBudgetExceeded("lipsum() (placeholder text, made in bulk) is not available in messages")


def _charged_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(function) is not None else 0  # context, eval context or environment

    @functools.wraps(function)  # keeps Jinja's pass_context / pass_eval_context marker
    def charged(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        if name == "join" and len(args) > skip:
            args = (*args[:skip], _materialized(args[skip]), *args[skip + 1 :])
        _check_filter(name, args[skip:], kwargs)
        return budget.charge(function(*args, **kwargs))

    return charged


class PersonalizationSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox: failing loudly on unsafe attributes, drawing every render's budget."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            keep_trailing_newline=True,
            undefined=ChainableUndefined,  # a field the recipient lacks renders as ""
            # "{#" occurs in minified CSS (@media{#body{...}}); "{##" never does. {% %} blocks stay available.
            comment_start_string="{##",
            comment_end_string="##}",
            cache_size=0,
            auto_reload=False,
        )
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _no_lipsum
        self.filters = {name: _charged_filter(name, f) for name, f in self.filters.items()}
        self._join = markup_join if autoescape else str_join

    def compile_template(self, source: str) -> Any:
        """Parse the source and compile it with the budget drawn at every loop step, concat and output."""
        tree = _BudgetDrawer().visit(self.parse(source))
        tree.set_environment(self)
        return self.from_string(tree)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # The default returns an Undefined that missing-field rendering would print as "": refuse instead.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        _check_binop(operator, left, right)
        return budget.charge(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__self__", None) is __self:  # budget_step / _concat / _output: draw themselves
            kwargs.pop("_loop_vars", None)  # what Context.call would drop: the compiler adds it in loops
            return __obj(*args, **kwargs)
        budget = _budget()
        budget.step()
        if getattr(__obj, "__name__", "") == "join" and isinstance(getattr(__obj, "__self__", None), str):
            args = (_materialized(args[0]), *args[1:]) if args else args
        _check_method(__obj, args, kwargs)
        return budget.charge(super().call(__context, __obj, *args, **kwargs))

    # Reached from the compiled template (EnvironmentAttribute nodes), not from template code.

    def budget_step(self) -> bool:
        _budget().step()
        return True

    def budget_concat(self, *pieces: Any) -> str:
        _check_length(sum(len(str(piece)) for piece in pieces))
        joined: str = _budget().charge(self._join(pieces))  # Markup stays Markup
        return joined

    def budget_output(self, value: Any) -> Any:
        if isinstance(value, str):
            _budget().charge(value, capped=False)  # a literal chunk of the content may be long
        return value


def _environment_call(method: str, *arguments: nodes.Expr, lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method), list(arguments), [], None, None)
    call.set_lineno(lineno)
    return call


class _BudgetDrawer(NodeTransformer):
    """Rewrites a template so loops, ``~`` and repeated or collected output draw on the render budget.

    Output at the top level runs once per render and is bounded by the content and the values it
    prints; output inside a loop, macro, call, filter, set or named block can run many times or be
    collected into one value, so it is charged.
    """

    _REPEATING = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock, nodes.Block)

    def __init__(self) -> None:
        self._depth = 0

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        repeating = isinstance(node, self._REPEATING)
        self._depth += repeating
        try:
            return super().generic_visit(node, *args, **kwargs)
        finally:
            self._depth -= repeating

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, nodes.ExprStmt(_environment_call("budget_step", lineno=node.lineno)))
        node.body[0].set_lineno(node.lineno)
        if node.test is not None:
            node.test = nodes.And(_environment_call("budget_step", lineno=node.lineno), node.test)
            node.test.set_lineno(node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _environment_call("budget_concat", *node.nodes, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        if self._depth:
            node.nodes = [self._charged(child) for child in node.nodes]
        return node

    @staticmethod
    def _charged(child: nodes.Expr) -> nodes.Expr:
        if isinstance(child, nodes.TemplateData):
            literal = nodes.MarkSafeIfAutoescape(nodes.Const(child.data))
            literal.set_lineno(child.lineno)
            return _environment_call("budget_output", literal, lineno=child.lineno)
        return _environment_call("budget_output", child, lineno=child.lineno)
