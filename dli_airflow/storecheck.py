"""The rules across the specs of one store, which no single file can break: look-alike names and cycles.

:func:`check_store` runs on the resolved entries of :func:`dli_airflow.catalog.resolve` and takes out what
cannot be scheduled, reporting each case once:

- **look-alike names** (DLI-204): names that differ only by case or by ``-``/``_`` (``Sales-Daily``,
  ``sales_daily``) are two DAG ids to Airflow but one dataset to a reader, and one file on a case-insensitive
  disk. Within one prefix neither is scheduled, like two files of one name. A manual look-alike of a code
  dataset is overridden (code wins), so a registration can never take a code dataset's place or knock it out.
- **depends_on cycles** (DLI-201), of any length: ``a`` depends on ``b`` and ``b`` on ``a`` would trigger each
  other's runs for ever through their assets. A cycle of code datasets is not scheduled; in a cycle that
  manual datasets close, only the manual ones are taken out and the code ones keep running.

Nothing here touches Airflow; it costs one pass over the entries and their ``depends_on`` edges.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dli_airflow.errors import DliError, Problem, SpecConflictError, SpecValidationError
from dli_airflow.spec import DatasetStatus, SourceType, name_key

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry
    from dli_airflow.store import SpecStore


def check_store(
    store: SpecStore, entries: list[SpecEntry], problems: list[DliError], code_names: Iterable[str] = ()
) -> list[SpecEntry]:
    """The entries that may be scheduled as they are; a problem appended for each one taken out or overridden.

    :param entries: the resolved entries (each name at most once per prefix; exact twins already overridden)
    :param problems: the store's problems, appended to
    :param code_names: every name ``code/`` declares, including files that failed to load or conflict
    """
    entries = _look_alikes(store, entries, problems, code_names)
    return _without_cycles(store, entries, problems)


def _look_alikes(
    store: SpecStore, entries: list[SpecEntry], problems: list[DliError], code_names: Iterable[str]
) -> list[SpecEntry]:
    code_by_key: dict[str, str] = {}
    for name in sorted({*code_names, *(e.name for e in entries if e.source is SourceType.CODE)}):
        code_by_key.setdefault(name_key(name), name)
    kept: list[SpecEntry] = []
    for entry in entries:
        twin = code_by_key.get(name_key(entry.name)) if entry.source is SourceType.MANUAL else None
        if twin is not None and entry.schedules:  # an exact twin is overridden already, so this is a look-alike
            shown = store.display(entry.path)
            problems.append(
                SpecConflictError(
                    f"{shown}: dataset {entry.name!r} differs from the code dataset {twin!r} only by case or "
                    "'-'/'_'; the code dataset wins and this manual copy is not scheduled",
                    hint=f"give it the code dataset's exact name {twin!r} (code still wins) or a clearly different name",
                    problems=[Problem(f"looks like code's {twin!r}", file=shown, field="name")],
                )
            )
            entry = dataclasses.replace(entry, status=DatasetStatus.OVERRIDDEN, overridden_by=SourceType.CODE)
        kept.append(entry)
    groups: dict[tuple[str, str], list[SpecEntry]] = {}
    for entry in kept:
        if entry.schedules:
            groups.setdefault((entry.source.value, name_key(entry.name)), []).append(entry)
    out: set[int] = set()
    for (prefix, _), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        files = [store.display(m.path) for m in members]
        problems.append(
            SpecConflictError(
                f"Datasets {', '.join(repr(m.name) for m in members)} under {prefix}/ differ only by case or "
                "'-'/'_': " + " and ".join(files),
                problems=[Problem(f"declares dataset {m.name!r}", file=f, field="name") for m, f in zip(members, files)],
            )
        )
        out.update(id(m) for m in members)
    return [e for e in kept if id(e) not in out]


def _without_cycles(store: SpecStore, entries: list[SpecEntry], problems: list[DliError]) -> list[SpecEntry]:
    live = {e.name: e for e in entries if e.schedules}
    if not any(e.spec.depends_on for e in live.values()):
        return entries
    out: set[str] = set()
    # code first: a cycle of code datasets is out; then what is left can only cycle through manual datasets
    for names in ({n for n, e in live.items() if e.source is SourceType.CODE}, set(live)):
        names -= out
        # only a dataset with an upstream among ``names`` can be on a cycle
        graph = {n: ups for n in sorted(names) if (ups := [d for d in live[n].spec.depends_on if d in names])}
        graph = {n: [d for d in ups if d in graph] for n, ups in graph.items()}
        for component in strong_components(graph):
            manual = [n for n in component if live[n].source is SourceType.MANUAL]
            taken = manual or component
            out.update(taken)
            problems.append(_cycle_error(store, [live[n] for n in component], _cycle(graph, component), taken))
    return [e for e in entries if not (e.schedules and e.name in out)]


def _cycle_error(store: SpecStore, members: list[SpecEntry], cycle: list[str], taken: list[str]) -> DliError:
    shown = " -> ".join(repr(n) for n in cycle)
    if len(taken) == len(members):
        outcome = "none of them is scheduled"
    else:
        outcome = f"the manual ones ({', '.join(repr(n) for n in taken)}) are not scheduled; the code ones keep running"
    return SpecValidationError(
        f"depends_on: datasets {shown} form a cycle: each run would trigger the next for ever; {outcome}",
        hint="remove one depends_on entry of the cycle",
        problems=[
            Problem(f"{m.name!r} depends on {', '.join(repr(d) for d in m.spec.depends_on)}", file=store.display(m.path),
                    field="depends_on")
            for m in members
        ],
    )


def _cycle(graph: dict[str, list[str]], component: list[str]) -> list[str]:
    """The shortest cycle through the component's first name (breadth first), first name at both ends."""
    start, inside = component[0], set(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in graph[node]:
            if child not in inside:
                continue
            if child == start:
                back = [node]
                while back[-1] != start:
                    back.append(parent[back[-1]])
                return [*reversed(back), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    return [*component, start]  # pragma: no cover - a strong component always has a cycle through each member


def strong_components(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, each sorted (Tarjan's algorithm).

    Iterative, so a chain of 10,000 ``depends_on`` never reaches Python's recursion limit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root, edges in graph.items():
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


__all__ = ["check_store", "strong_components"]
