"""The Datasets page of Airflow's UI (served by the control plane at ``/dli/datasets``): over HTTP with a token,
and in a real headless Chromium that logs in through Airflow's login form, opens the page from the UI and
takes a screenshot (kept in ``$DLI_SCREENSHOTS`` when set)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from browser import Browser, login

from dli_airflow import dev
from dli_airflow.catalog import scan

pytestmark = pytest.mark.e2e

BROKEN = "name: e2e.page_broken\nowner: page@example.com\nquery: SELECT 1\nparameters:\n  - {name: n, type: intger}\n"


def _token(airflow, user: str) -> str:
    return dev.get_token(airflow.url, user, json.loads((airflow.home / "passwords.json").read_text())[user])


@pytest.fixture(scope="module")
def broken_spec(airflow):
    """One broken spec in the store while these tests run: the page must show it at the top."""
    path = Path(airflow.store) / "manual" / "e2e_page_broken.yaml"
    path.write_text(BROKEN)
    # the control plane serves a snapshot at most 10 s old (5 s, then one background listing): wait for it
    headers = {"Authorization": f"Bearer {_token(airflow, 'viewer')}"}
    deadline = time.monotonic() + 60
    while "e2e_page_broken.yaml" not in httpx.get(f"{airflow.url}/dli/api/v1/problems", headers=headers,
                                                    timeout=60).text:
        assert time.monotonic() < deadline, "the control plane never showed the broken spec"
        time.sleep(1)
    yield path
    path.unlink()


def test_the_page_lists_the_store_with_its_problems_first(airflow, broken_spec) -> None:
    response = httpx.get(f"{airflow.url}/dli/datasets", headers={"Authorization": f"Bearer {_token(airflow, 'viewer')}"},
                         timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    for entry in scan(airflow.store).entries:
        assert entry.name in html
    assert "1 broken spec(s)" in html and "<code>manual/e2e_page_broken.yaml</code>" in html and "parameters" in html
    assert airflow.store not in html  # store paths as users know them, not the server's
    assert html.index("broken spec(s)") < html.index("<table")
    assert "Asia/Seoul" in html and "overridden by code" in html
    assert 'href="../dags/analytics.daily_clicks" target="_top"' in html
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]


def test_the_page_without_a_session_asks_to_sign_in(airflow) -> None:
    response = httpx.get(f"{airflow.url}/dli/datasets", timeout=60)
    assert response.status_code == 401 and "Sign in to Airflow" in response.text
    assert "analytics." not in response.text


def test_the_ui_has_a_datasets_entry_framing_the_page(airflow) -> None:
    with airflow.api() as api:
        [plugin] = [p for p in api.get("/plugins").json()["plugins"] if p["name"] == "dli"]
    [view] = plugin["external_views"]
    assert (view["name"], view["url_route"], view["href"]) == ("Datasets", "dli-datasets", "dli/datasets")


# chromium is a test requirement (.ci/run installs it from Debian): without it this test fails saying so
def test_a_user_logs_in_and_sees_the_datasets_page_in_a_real_browser(airflow, broken_spec, tmp_path) -> None:
    password = json.loads((airflow.home / "passwords.json").read_text())["viewer"]
    with Browser(tmp_path / "profile", tz="UTC") as browser:
        login(browser, airflow.url, "viewer", password)
        browser.wait_for("[...document.querySelectorAll('a')].some(a => a.textContent.trim() === 'Datasets')",
                         what="the Datasets entry in the UI's navigation")
        browser.goto(f"{airflow.url}/plugin/dli-datasets")
        frame = "document.querySelector('iframe')"
        text = browser.wait_for(
            f"{frame} && {frame}.contentDocument && {frame}.contentDocument.querySelector('table') "
            f"&& {frame}.contentDocument.body.innerText", timeout=90, what="the framed Datasets page")
        time.sleep(1)  # let the frame paint before the screenshot
        shot = browser.screenshot(tmp_path / "datasets-page.png")
    assert "Datasets" in text and "signed in as viewer" in text
    assert "1 broken spec(s)" in text and "manual/e2e_page_broken.yaml" in text
    assert "analytics.daily_clicks" in text and "Asia/Seoul" in text and "overridden by code" in text
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    keep = os.environ.get("DLI_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
