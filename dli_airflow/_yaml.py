"""The safe, bounded YAML loader of spec files: one document, UTF-8, at most 1 MiB, no tags, no alias bombs,
no duplicate keys, and no value YAML 1.1 silently reads as something other than what was written.

``load_yaml(data, path)`` returns the plain document or raises one :class:`~dli_airflow.errors.SpecSyntaxError`
(DLI-202) naming the file, the line and the fix. Nothing here touches Airflow.

Two YAML 1.1 habits change a spec's meaning without a word, so the loader works on the node tree, before
any value is built:

- a later duplicate key silently replaces the first (a second ``schedule:`` re-enables a disabled dataset):
  refused, naming the key and both lines;
- unquoted scalars are typed first: ``NO`` becomes false, ``010`` becomes 8, ``12:30:00`` becomes 45000. At
  :data:`TEXT_PATHS` (a parameter's ``default``, whose type the parameter declares) the text is kept as
  written and the spec coerces it to the declared type; elsewhere a number that reads differently in YAML
  1.1 and as written (a leading zero, ``0b``, ``:``) is refused with "quote it".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from dli_airflow.errors import SpecSyntaxError

#: A spec larger than this is refused before parsing (specs are a few KiB; this stops a 10 MB paste).
MAX_SPEC_BYTES = 1024 * 1024
#: The most YAML nodes a spec may expand to through anchors and aliases (stops an alias bomb).
MAX_YAML_NODES = 20_000

try:  # the C loader is several times faster; fall back to pure Python where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_DATE_CONTEXT = "while constructing a date"

#: Where an unquoted scalar keeps its text as written (``None``: any key or list index). A parameter's
#: ``default`` is coerced to the parameter's own ``type`` by :mod:`dli_airflow.spec`, so YAML must not type it.
TEXT_PATHS: tuple[tuple[str | None, ...], ...] = (("parameters", None, "default"),)

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
#: Tags YAML 1.1 gives unquoted text (null stays null: ``default: ~`` is no default).
_TYPED = frozenset(f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp"))
_NUMBERS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
#: Unquoted numbers YAML 1.1 reads otherwise than as written: octal ``010`` (8), binary ``0b11`` (3) and
#: base 60 ``1:30`` (90); YAML 1.2 and people read them differently.
_AMBIGUOUS_NUMBER = re.compile(r"[-+]?(?:0[0-9_]|0[bB]|[0-9_.]*:)")


class _SpecLoader(_Loader):  # type: ignore[valid-type,misc]
    """The safe loader, but an impossible date (``2024-02-30``) is a marked YAML error, not a bare ValueError."""


def _construct_timestamp(loader: Any, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            _DATE_CONTEXT, node.start_mark, f"{node.value!r} is not a valid date ({exc})", node.start_mark
        ) from None


_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)



def load_yaml(data: bytes | str, path: str) -> Any:
    """Safe-load one YAML document with limits on size and alias expansion."""
    if isinstance(data, bytes):
        if len(data) > MAX_SPEC_BYTES:
            raise SpecSyntaxError(
                f"{path}: the file is {len(data) / 1e6:.1f} MB; a spec may be at most {MAX_SPEC_BYTES // 1024} KiB",
                hint="put large SQL in a query_file and keep the spec small",
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SpecSyntaxError(
                f"{path}:{line}: the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                hint="save the file as UTF-8",
            ) from None
    else:
        text = data
        if len(text) > MAX_SPEC_BYTES:
            raise SpecSyntaxError(f"{path}: the spec is larger than {MAX_SPEC_BYTES // 1024} KiB")
    if not text.strip():
        raise SpecSyntaxError(
            f"{path}: the file is empty",
            hint="a Dataset Spec needs at least name, owner and query or query_file (see `dli spec schema`)",
        )
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecSyntaxError(f"{path}: the file holds only comments", hint="write the spec's fields")
        for pattern in TEXT_PATHS:
            _keep_text(node, pattern)
        _check_nodes(node, path)
        document = loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecSyntaxError(
            f"{path}{line}: {exc.problem}",
            hint="write dates as YYYY-MM-DD, e.g. 2024-01-15"
            if exc.context == _DATE_CONTEXT
            else "Dataset Specs are plain YAML: remove tags such as !!python/object",
        ) from None
    except yaml.composer.ComposerError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecSyntaxError(f"{path}{line}: {exc.problem}", hint="a spec file holds exactly one YAML document") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise SpecSyntaxError(f"{path}{line}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecSyntaxError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    return document


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """A mapping's key/value nodes, with those ``<<: *anchor`` merges in (the explicit ones first)."""
    merged: list[yaml.Node] = []
    for key, value in node.value:
        if key.tag == _MERGE:
            merged += value.value if isinstance(value, yaml.SequenceNode) else [value]
        else:
            yield key, value
    for other in merged:
        if isinstance(other, yaml.MappingNode):
            yield from _pairs(other)


def _keep_text(node: yaml.Node, pattern: tuple[str | None, ...]) -> None:
    """Make the unquoted typed scalars at ``pattern`` below ``node`` plain text (the text as written)."""
    if not pattern:
        if isinstance(node, yaml.ScalarNode) and not node.style and node.tag in _TYPED:
            node.tag = _STR
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(node, yaml.SequenceNode) and head is None:
        for child in node.value:
            _keep_text(child, rest)
    elif isinstance(node, yaml.MappingNode):
        for key, value in _pairs(node):
            if head is None or (isinstance(key, yaml.ScalarNode) and key.value == head):
                _keep_text(value, rest)


def _check_nodes(root: yaml.Node, path: str) -> None:
    """One walk over the node tree: refuse alias expansion past :data:`MAX_YAML_NODES` (the "billion
    laughs"), nesting past 100 levels, duplicate keys and ambiguous unquoted numbers."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > 100:
            raise SpecSyntaxError(f"{path}: the YAML nests deeper than 100 levels")
        total = 1
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBERS and not node.style and _AMBIGUOUS_NUMBER.match(node.value):
                _refuse_ambiguous(node, path)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            if len(node.value) > 1:
                _check_unique_keys(root, node, path)
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        sizes[id(node)] = total
        if total > MAX_YAML_NODES:
            raise SpecSyntaxError(
                f"{path}: the YAML expands to more than {MAX_YAML_NODES} nodes through anchors and aliases",
                hint="remove the repeated aliases (&x / *x); a spec has no need for them at this size",
            )
        return total

    size(root, 0)


def _check_unique_keys(root: yaml.Node, node: yaml.MappingNode, path: str) -> None:
    """Refuse a key written twice in one mapping: YAML would silently keep the last value."""
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            where = _path_to(root, node)
            shown = f"{where}.{key.value}" if where else key.value
            raise SpecSyntaxError(
                f"{path}:{key.start_mark.line + 1}: duplicate key {shown!r} (first at line "
                f"{first.start_mark.line + 1}, again at line {key.start_mark.line + 1})",
                hint="keep one of the two; YAML would silently use the last one",
            )


def _path_to(root: yaml.Node, target: yaml.Node) -> str:
    """The dotted field path of ``target`` below ``root`` (for messages; only on the error path)."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if node is target:
            return where
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [(v, f"{where}.{k.value}" if where else str(k.value)) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(node.value)]
    return ""


def _refuse_ambiguous(node: yaml.ScalarNode, path: str) -> None:
    read = yaml.safe_load(node.value)
    raise SpecSyntaxError(
        f"{path}:{node.start_mark.line + 1}: the unquoted value {node.value} is ambiguous: YAML 1.1 reads it as "
        f"{read!r}",
        hint=f"quote it to keep the text ('{node.value}'), or write the number without a leading zero or ':'",
    )



__all__ = ["MAX_SPEC_BYTES", "MAX_YAML_NODES", "TEXT_PATHS", "load_yaml"]
