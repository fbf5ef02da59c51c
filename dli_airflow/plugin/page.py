"""The Datasets page: every spec of the store with its state in Airflow, the store's problems at the top.

Served by the control plane's app at ``/dli/datasets`` and shown in Airflow's UI as the "Datasets" nav entry
(an external view: the UI frames it), authenticated like the rest of the UI (its ``_token`` cookie, or a
bearer token) and filtered by the reader's DAG permissions. Plain server-rendered HTML: every value escaped,
no script, so nothing on the page can run code a spec's author wrote.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from dli_airflow.errors import DliError
from dli_airflow.spec import DatasetStatus
from dli_airflow.workflow import WorkflowInfo

#: Rows shown at most (the filter box narrows them down)
MAX_ROWS = 5000

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px 20px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#59636e;margin:0 0 14px}
.problems{border:1px solid #d1242f;background:#ffebe9;border-radius:6px;padding:10px 14px;margin:0 0 16px}
.problems h2{font-size:15px;margin:0 0 6px;color:#d1242f} .problems li{margin:3px 0}
.warn{border:1px solid #bf8700;background:#fff8c5;border-radius:6px;padding:8px 14px;margin:0 0 16px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:1px 4px;border-radius:4px}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d1d9e0;vertical-align:top}
th{background:#f6f8fa;font-weight:600;position:sticky;top:0} tr:hover td{background:#f6f8fa}
.st{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.active{background:#dafbe1;color:#116329}.paused{background:#eaeef2;color:#59636e}.overridden{background:#fff1e5;color:#953800}
.running{background:#ddf4ff;color:#0969da} form{margin:0 0 12px} input{padding:4px 8px;font-size:14px;width:260px}
.muted{color:#59636e} a{color:#0969da;text-decoration:none} a:hover{text-decoration:underline}
"""


def _zoned(value: datetime | None, zone: str | None) -> str:
    if value is None:
        return "-"
    name = zone or "UTC"
    try:
        return f"{value.astimezone(ZoneInfo(name)):%Y-%m-%d %H:%M} {name}"
    except (KeyError, ValueError):
        return f"{value:%Y-%m-%d %H:%M %Z}"


def _status(info: WorkflowInfo) -> str:
    value = info.status.value if hasattr(info.status, "value") else str(info.status)
    label = f"overridden by {info.overridden_by.value}" if info.status is DatasetStatus.OVERRIDDEN and info.overridden_by else value
    badge = f'<span class="st {escape(value)}">{escape(label)}</span>'
    if info.is_running:
        badge += ' <span class="st running">running</span>'
    return badge


def _row(info: WorkflowInfo) -> str:
    name = escape(info.dataset_name)
    if info.in_airflow and info.status is not DatasetStatus.OVERRIDDEN:
        # the page is framed by the UI: open the DAG in the whole window
        link = f'<a href="../dags/{escape(info.dataset_name, quote=True)}" target="_top">{name}</a>'
    else:
        link = f'{name} <span class="muted">(not a DAG)</span>' if not info.in_airflow else name
    schedule = f"<code>{escape(info.cron)}</code> {escape(info.timezone or 'UTC')}" if info.cron else '<span class="muted">no schedule</span>'
    if info.depends_on:
        assets = ", ".join(escape(d) for d in info.depends_on)
        schedule = f"{schedule} or asset {assets}" if info.cron else f"asset {assets}"
    cells = [
        link, escape(info.source_type.value), _status(info), schedule, escape(_zoned(info.next_run, info.timezone)),
        escape(info.owner or "-"), escape(info.team or "-"), f"<code>{escape(info.spec_file or '-')}</code>",
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _relative(path: str | None, root: str) -> str | None:
    """A store path as the store's users know it (``manual/x.yaml``), not the server's absolute one."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path and root and path.startswith(prefix) else path


def _problem(problem: DliError, root: str = "") -> str:
    parts = []
    for p in problem.problems or []:
        where = ":".join(str(x) for x in (_relative(p.file, root), p.line) if x is not None)
        field = f" <code>{escape(p.field)}</code>" if p.field else ""
        fix = f" — fix: {escape(p.hint)}" if p.hint else ""
        parts.append(f"<li><code>{escape(where or '-')}</code>{field}: {escape(p.message)}{fix}</li>")
    if not parts:
        fix = f" — fix: {escape(problem.hint)}" if problem.hint else ""
        parts.append(f"<li>[{escape(problem.code)}] {escape(problem.message)}{fix}</li>")
    return "".join(parts)


def render(infos: list[WorkflowInfo], problems: tuple[DliError, ...], warnings: tuple[str, ...], *,
           user: str, query: str = "", store_readable: bool = True, store: str = "") -> str:
    """The whole page (``infos`` already filtered to what ``user`` may read; ``store``: the store's location,
    cut from the problems' paths)."""
    needle = query.strip().lower()
    shown = [i for i in infos if not needle or needle in i.dataset_name.lower() or needle in (i.owner or "").lower()
             or needle in (i.team or "").lower()]
    counts = {s: sum(1 for i in infos if i.status is s) for s in DatasetStatus}
    head = (f"{len(infos)} dataset(s): {counts[DatasetStatus.ACTIVE]} active, {counts[DatasetStatus.PAUSED]} paused, "
            f"{counts[DatasetStatus.OVERRIDDEN]} overridden")
    body = [f"<h1>Datasets</h1><p class='sub'>{escape(head)} · signed in as {escape(user)}</p>"]
    if problems:
        items = "".join(_problem(p, store) for p in problems)
        body.append(f"<section class='problems' id='problems'><h2>{len(problems)} broken spec(s) — not scheduled until "
                    f"fixed</h2><ul>{items}</ul><div class='muted'>Check them before publishing with "
                    "<code>dli spec validate PATH</code>.</div></section>")
    for warning in warnings:
        body.append(f"<div class='warn'>{escape(warning)}</div>")
    if not store_readable:
        body.append("<div class='warn'>The spec store cannot be read by the api-server right now.</div>")
    body.append(f"<form method='get'><input name='q' value='{escape(query, quote=True)}' "
                "placeholder='Filter by name, owner or team' aria-label='filter'></form>")
    rows = "".join(_row(i) for i in shown[:MAX_ROWS])
    more = f"<p class='muted'>{len(shown) - MAX_ROWS} more: narrow the filter.</p>" if len(shown) > MAX_ROWS else ""
    body.append("<table><thead><tr><th>Dataset</th><th>Source</th><th>Status</th><th>Schedule</th><th>Next run</th>"
                f"<th>Owner</th><th>Team</th><th>Spec</th></tr></thead><tbody>{rows}</tbody></table>{more}")
    if not shown:
        body.append("<p class='muted'>No dataset matches.</p>")
    return page("Datasets · dli", "".join(body))


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width'><style>{_STYLE}</style></head><body>{body}</body></html>")


def sign_in(reason: str) -> str:
    """The page for a visitor the api-server does not know (no cookie, or an expired one)."""
    return page("Sign in · dli", f"<h1>Datasets</h1><p>{escape(reason)}</p>"
                "<p><a href='../' target='_top'>Sign in to Airflow</a>, then open this page from its menu.</p>")


def security_headers() -> dict[str, Any]:
    """No script runs on the page; only Airflow's own UI (same origin) may frame it."""
    return {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; "
            "form-action 'self'; base-uri 'none'", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


__all__ = ["MAX_ROWS", "render", "security_headers", "sign_in"]
