"""The operator dashboard in the Django admin: staff only, charts from the project's static files."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from conftest import grant, run_task
from dashboards.tasks import ledger_health_check_task

pytestmark = pytest.mark.django_db

PAGE = "/admin/dashboard/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_see_the_figures_and_the_charts(olga, history):
    run_task(ledger_health_check_task)
    response = logged_in(olga).get(PAGE, {"period": "month", "tz": "America/New_York"})

    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/dashboards/vendor/chart.umd.min.js">' in html
    assert "cdn" not in html.lower()
    data = json.loads(re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert data["totals"]["gross_volume"] == "16.735234"
    assert data["tz"] == "America/New_York"
    assert [row["period"] for row in data["series"]][-2:] == ["2026-10", "2026-11"]
    assert 'id="ledger-health">Conserved<' in html
    assert "checked 2026-11-20T12:00:00Z, 0 s ago" in html


def test_the_ledger_health_before_the_scheduled_check_ever_ran(olga):
    html = logged_in(olga).get(PAGE, {"refresh": "1"}).content.decode()  # recomputing the figures runs no check

    assert 'id="ledger-health">Not yet checked<' in html
    assert "the scheduled check (every 2 minutes) has not run yet" in html


def test_chart_library_is_a_static_file_with_its_license():
    path = finders.find("dashboards/vendor/chart.umd.min.js")

    assert path
    with open(path) as script:
        assert "Chart.js v4" in script.read(300)
    assert finders.find("dashboards/vendor/chart.js.LICENSE.md")
    assert finders.find("dashboards/operator.js")


def test_bad_parameters_fall_back_to_30_days(olga):
    response = logged_in(olga).get(PAGE, {"tz": "Nowhere/Land"})

    assert response.status_code == 200
    assert "showing the last 30 days" in response.content.decode()


def test_the_admin_index_links_to_it(olga):
    assert PAGE in logged_in(olga).get("/admin/").content.decode()


def test_not_for_users_or_vendors(alice, victor):
    for user in (alice, victor):
        response = logged_in(user).get(PAGE)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_counts_agree_with_their_nouns(olga, victor, alice):
    html = logged_in(olga).get(PAGE).content.decode()

    assert "1 vendor, 1 admin<" in html
    assert "0 charges<" in html
    assert "1 admins" not in html and "1 vendors" not in html


def test_staff_need_the_platform_overview_permission_as_the_api_asks(stan):
    assert logged_in(stan).get(PAGE).status_code == 403
    assert PAGE not in logged_in(stan).get("/admin/").content.decode()

    allowed = logged_in(grant(stan, "dashboards.view_platform_overview"))

    assert allowed.get(PAGE).status_code == 200
    assert PAGE in allowed.get("/admin/").content.decode()


SANDBOX_BANNER = 'id="chipi-sandbox-banner"'


def test_the_page_shows_a_banner_while_the_chipi_sandbox_is_in_use(olga):
    html = logged_in(olga).get(PAGE).content.decode()

    assert SANDBOX_BANNER in html
    assert "Chipi sandbox" in html
    assert "simulated" in html


def test_no_banner_with_live_chipi(olga, settings):
    settings.CHIPI_API_KEY, settings.CHIPI_SECRET_KEY, settings.CHIPI_SANDBOX = "pk_live_1", "sk_live_1", False

    html = logged_in(olga).get(PAGE).content.decode()

    assert SANDBOX_BANNER not in html


def test_every_admin_page_names_the_sandbox_in_its_header(olga, settings):
    assert "Chipi sandbox" in logged_in(olga).get("/admin/").content.decode()

    settings.CHIPI_API_KEY, settings.CHIPI_SECRET_KEY, settings.CHIPI_SANDBOX = "pk_live_1", "sk_live_1", False
    assert "Chipi sandbox" not in logged_in(olga).get("/admin/").content.decode()
