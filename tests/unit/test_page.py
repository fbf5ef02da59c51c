"""The Datasets page's HTML (rendered without an api-server; served and authorized in a real one:
tests/e2e/test_control_plane_e2e.py, and seen in Chromium: tests/e2e/test_datasets_page_browser.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dli_airflow.errors import Problem, SpecValidationError
from dli_airflow.plugin import page
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.workflow import WorkflowInfo


def _info(name: str = "analytics.daily", **kw) -> WorkflowInfo:
    base = dict(dataset_name=name, source_type=SourceType.CODE, status=DatasetStatus.ACTIVE, cron="0 9 * * *",
                timezone="Asia/Seoul", next_run=datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc), owner="ana@x.io",
                team="growth", spec_file="code/daily.yaml")
    base.update(kw)
    return WorkflowInfo(**base)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_the_page_lists_every_workflow_with_its_zone_status_and_a_link_to_its_dag():
    html = page.render([
        _info(),
        _info("analytics.user_metrics", source_type=SourceType.MANUAL, status=DatasetStatus.OVERRIDDEN,
              overridden_by=SourceType.CODE, next_run=None),
        _info("reports.weekly", status=DatasetStatus.PAUSED, cron=None, depends_on=("analytics.daily",)),
    ], (), (), user="ana")
    assert "2026-12-03 09:00 Asia/Seoul" in html  # the next run in the spec's own zone, labelled
    assert "overridden by code" in html and ">paused<" in html and "asset analytics.daily" in html
    assert 'href="../dags/analytics.daily" target="_top"' in html
    assert "3 dataset(s): 1 active, 1 paused, 1 overridden" in html and "signed in as ana" in html
    assert "broken spec" not in html


def test_broken_specs_are_at_the_top_with_file_field_and_fix():
    problem = SpecValidationError("invalid spec", problems=[
        Problem("Input should be 'integer' or 'string'", file="code/bad.yaml", field="parameters[0].type", line=7,
                hint="use one of: integer, string")])
    html = page.render([_info()], (problem,), ("store outage: served from the last good copy",), user="ana")
    assert html.index("1 broken spec(s)") < html.index("<table")
    assert "code/bad.yaml:7" in html and "parameters[0].type" in html and "fix: use one of: integer, string" in html
    assert "store outage" in html


def test_the_filter_narrows_by_name_owner_or_team():
    html = page.render([_info("a.one", owner="x@y"), _info("b.two", team="finance")], (), (), user="u", query="FIN")
    assert "b.two" in html and "a.one" not in html


_hostile = st.lists(st.sampled_from(list("<>\"'&/ =;:()`") + ["script", "onerror", "javascript", "img", "a", "x"]),
                    min_size=1, max_size=15).map("".join)


@pytest.mark.hostile(kind="http-bodies")
@settings(max_examples=200, deadline=None)
@given(name=_hostile, owner=_hostile, team=_hostile, message=_hostile, query=_hostile)
def test_no_value_on_the_page_becomes_markup(name, owner, team, message, query):
    """Names, owners, teams, problem messages and the filter are the spec authors' and the visitor's text: the
    page renders them as text, never as a tag or an attribute (and it runs no script at all)."""
    problem = SpecValidationError(message, problems=[Problem(message, file=name, field=team, hint=owner)])
    html = page.render([_info("x.y", owner=owner, team=team, spec_file=name)], (problem,), (message,), user=owner,
                       query=query)
    parsed = _Tags()
    parsed.feed(html)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "p", "section", "h2", "ul",
                                "li", "code", "div", "form", "input", "table", "thead", "tr", "th", "tbody", "td",
                                "span", "a"}
    assert {k for k, _ in parsed.attrs} <= {"lang", "charset", "name", "content", "class", "id", "method", "value",
                                           "placeholder", "aria-label", "href", "target"}


def test_the_page_may_be_framed_only_by_airflow_and_runs_no_script():
    headers = page.security_headers()
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers["Content-Security-Policy"]


def test_problem_paths_are_shown_as_store_paths_not_the_servers():
    problem = SpecValidationError("bad", problems=[Problem("bad type", file="/srv/dli/store/code/x.yaml", field="name")])
    html = page.render([], (problem,), (), user="u", store="/srv/dli/store")
    assert "<code>code/x.yaml</code>" in html and "/srv/dli" not in html
