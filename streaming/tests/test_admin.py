"""Sessions in the admin: the useful columns first, amounts in units, times to the second, no Save
button, the live cost on a running session's page, and a stop through the same service as the API."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.services import user_create
from conftest import grant
from streaming.models import SessionStatus, StopReason, StreamingSession
from streaming.tests.conftest import USDC, fresh, run_sweep, start
from wallets.tests.conftest import balance_of, fund_wallet

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture
def running(alice, make_service, clock, settings):
    # Its heartbeat comes a second after the idle timeout ran out: these tests are about the admin,
    # not presence (a silent session stops when its timeout runs out, test_presence.py).
    settings.SESSION_IDLE_SECONDS = 3600
    fund_wallet(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=1_500_000))
    clock.move(seconds=61)
    from streaming import services

    services.session_heartbeat(session_id=session.pk)
    run_sweep()
    return fresh(session)


def test_the_session_list_shows_status_cost_and_start_first_with_a_short_id(olga, running):
    html = _client(olga).get("/admin/streaming/streamingsession/").content.decode()

    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', html)
    assert headers[:4] == ["short_id", "status", "cost", "start_time"]
    text = _text(html)
    assert "1.525000 USDC" in text  # 61 s at 1.5 USDC a minute
    assert str(running.session_id)[:8] in text
    assert str(running.session_id) not in text


def test_a_session_page_shows_money_in_units_times_to_the_second_and_no_save(olga, running):
    html = _client(olga).get(f"/admin/streaming/streamingsession/{running.pk}/change/").content.decode()
    text = _text(html)

    assert "1.500000 USDC per minute" in text
    assert "1.525000 USDC" in text
    assert "Alice <alice@example.com> · USDC" in text  # the payer's account, by its owner
    assert running.start_time.strftime("%Y-%m-%d %H:%M:%S") in text
    assert "1525000" not in text and "1500000" not in text
    assert 'name="_save"' not in html
    assert "a.m." not in text and "p.m." not in text


def test_a_running_sessions_page_watches_its_live_cost(olga, running):
    html = _client(olga).get(f"/admin/streaming/streamingsession/{running.pk}/change/").content.decode()

    assert f'data-session-id="{running.session_id}"' in html
    assert 'data-auth="session"' in html
    assert "/static/streaming/live.js" in html
    assert f"/admin/streaming/streamingsession/{running.pk}/stop/" in html


def test_an_operator_stops_a_session_from_its_page(olga, running):
    response = _client(olga).post(f"/admin/streaming/streamingsession/{running.pk}/stop/")

    assert response.status_code == 302
    session = StreamingSession.objects.get(pk=running.pk)
    assert (session.status, session.stop_reason) == (SessionStatus.STOPPED, StopReason.STAFF)
    assert balance_of(running.user) == 10 * USDC - session.total_cost


def test_stopping_needs_the_permission_to_change_sessions(running):
    viewer = user_create(email="viewer@example.com", password=None, name="Viewer", role="user", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_streamingsession"))

    page = _client(viewer).get(f"/admin/streaming/streamingsession/{running.pk}/change/")
    response = _client(viewer).post(f"/admin/streaming/streamingsession/{running.pk}/stop/")

    assert page.status_code == 200
    assert "/stop/" not in page.content.decode()
    assert response.status_code == 403
    assert StreamingSession.objects.get(pk=running.pk).status == SessionStatus.ACTIVE


def test_stop_is_a_post_and_an_unknown_session_is_a_404(olga, running):
    client = _client(olga)

    assert client.get(f"/admin/streaming/streamingsession/{running.pk}/stop/").status_code == 405
    assert client.post("/admin/streaming/streamingsession/999999/stop/").status_code == 404


@pytest.fixture
def session(alice, fund, make_service):
    fund(alice, 10 * USDC)
    return start(alice, make_service("per_minute", rate=USDC))


def _stop(user, session):
    client = Client()
    client.force_login(user)
    return client.post(
        "/admin/streaming/streamingsession/", {"action": "stop_sessions", "_selected_action": [session.pk]}
    )


def test_staff_who_may_only_view_sessions_are_not_offered_the_stop(stan, session):
    response = _stop(grant(stan, "streaming.view_streamingsession"), session)

    assert response.status_code == 200  # the list again: no action is offered
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


def test_staff_who_may_change_sessions_stop_them(stan, session):
    response = _stop(grant(stan, "streaming.change_streamingsession"), session)

    assert response.status_code == 302
    session.refresh_from_db()
    assert (session.status, session.stop_reason) == (SessionStatus.STOPPED, "staff")


# --- A session's charges on its page: the latest, and a link to all of them ---------------------------


def _charge(session, clock) -> None:
    from streaming import services

    clock.move(seconds=61)
    services.session_heartbeat(session_id=session.pk)
    run_sweep()


def _page(client, session) -> tuple[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/admin/streaming/streamingsession/{session.pk}/change/")
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_a_session_page_reads_as_many_queries_for_five_charges_as_for_one(olga, running, clock):
    """Each charge drawn read its account, owner and asset: 3 queries a charge, and a per-second
    session's page (1,440 charges a day) took a minute."""
    client = _client(olga)
    _page(client, running)  # what Django caches (content types)
    _, with_one = _page(client, running)
    for _ in range(4):
        _charge(running, clock)

    html, with_five = _page(client, running)

    assert len(re.findall(r'id="charge_entries-\d+"', html)) == 5
    assert with_five == with_one


def test_a_session_page_shows_its_latest_charges_and_links_to_all_of_them(olga, running, clock, monkeypatch):
    from streaming.admin import SessionChargeInline

    monkeypatch.setattr(SessionChargeInline, "rows", 2)
    for _ in range(2):
        _charge(running, clock)
    client = _client(olga)

    html, _ = _page(client, running)
    link = f"/admin/wallets/entry/?session={running.pk}"
    everything = client.get(link)

    shown = re.findall(r'class="field-billed_until">(.*?)</td>', html, re.S)
    oldest, *latest = running.charge_entries.order_by("billed_until")
    assert [_text(until).strip() for until in shown] == [
        f"{c.billed_until:%Y-%m-%d %H:%M:%S} UTC" for c in latest[::-1]
    ]
    assert f'href="{link}"' in html and "2 of 3 charges" in _text(html)
    assert everything.status_code == 200
    assert sorted(entry.pk for entry in everything.context["cl"].result_list) == sorted(
        [oldest.pk, *[c.pk for c in latest]]
    )
