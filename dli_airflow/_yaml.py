"""The safe, bounded YAML loader of spec files: one document, UTF-8, at most 1 MiB, no tags, no alias bombs.

``load_yaml(data, path)`` returns the plain document or raises one :class:`~dli_airflow.errors.SpecSyntaxError`
(DLI-202) naming the file, the line and the fix. Nothing here touches Airflow.
"""

from __future__ import annotations

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
        _check_expansion(node, path)
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


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Refuse documents whose aliases expand past :data:`MAX_YAML_NODES` (the "billion laughs")."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > 100:
            raise SpecSyntaxError(f"{path}: the YAML nests deeper than 100 levels")
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        sizes[id(node)] = total
        if total > MAX_YAML_NODES:
            raise SpecSyntaxError(
                f"{path}: the YAML expands to more than {MAX_YAML_NODES} nodes through anchors and aliases",
                hint="remove the repeated aliases (&x / *x); a spec has no need for them at this size",
            )
        return total

    size(root, 0)



__all__ = ["MAX_SPEC_BYTES", "MAX_YAML_NODES", "load_yaml"]
