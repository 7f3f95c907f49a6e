"""A user's dashboard: every figure against the hand-computed ledger of `history`, and who sees what."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import Sum

from conftest import grant
from streaming import services as streaming
from streaming.tests.conftest import charges_of
from wallets.models import AccountKind, Entry, TransactionKind

pytestmark = pytest.mark.django_db

OVERVIEW = "/api/v1/dashboard/user/overview"
SESSIONS = "/api/v1/dashboard/user/sessions"


def ledger_spent(user) -> int:
    """Minus the sum of the user's entries on charges, straight from the ledger."""
    total = Entry.objects.filter(
        account__kind=AccountKind.USER, account__owner=user, transaction__kind=TransactionKind.CHARGE
    ).aggregate(total=Sum("amount"))["total"]
    return -int(total or 0)


def test_overview_figures_equal_the_hand_computed_ledger(api, alice, history):
    body = api(alice).get(OVERVIEW).json()

    assert body["token"] == "USDC"
    assert body["overview"] == {
        "totalSessions": 4,
        "totalSpent": "13.735234",  # 10 + 2.5 + 1.235234
        "averageSessionLength": 634,  # (600 + 300 + 1001) / 3 ended sessions
        "recentActivity": 1,  # s4, started within the last 7 days
    }
    assert ledger_spent(alice) == 13_735_234
    assert body["favoriteCategories"] == [
        {
            "categoryId": history["minutes"].category_id,
            "category": "Time-Based",
            "totalSpent": "10.000000",
            "sessionCount": 2,  # s1, and s4 still running
        },
        {
            "categoryId": history["pass"].category_id,
            "category": "Digital Products & Content",
            "totalSpent": "2.500000",
            "sessionCount": 1,
        },
        {
            "categoryId": history["seconds"].category_id,
            "category": "Data & Analytics",
            "totalSpent": "1.235234",
            "sessionCount": 1,
        },
    ]
    assert [s["sessionId"] for s in body["recentSessions"]] == [
        str(history[name].session_id) for name in ("s4", "s3", "s2", "s1")
    ]
    assert [s["totalSpent"] for s in body["recentSessions"]] == ["0.000000", "1.235234", "2.500000", "10.000000"]


def test_overview_analytics_per_month_in_utc_and_in_new_york(api, alice, history):
    client = api(alice)

    utc = client.get(OVERVIEW, {"period": "month"}).json()
    new_york = client.get(OVERVIEW, {"period": "month", "tz": "America/New_York"}).json()

    assert len(utc["analytics"]) == 12
    assert utc["analytics"][-2:] == [
        {"period": "2026-10", "sessionCount": 1, "totalSpent": "10.000000"},
        {"period": "2026-11", "sessionCount": 3, "totalSpent": "3.735234"},
    ]
    # s2 started (and was charged) at 23:30 on October 31st in New York.
    assert new_york["analytics"][-2:] == [
        {"period": "2026-10", "sessionCount": 2, "totalSpent": "12.500000"},
        {"period": "2026-11", "sessionCount": 2, "totalSpent": "1.235234"},
    ]
    assert utc["analytics"][0] == {"period": "2025-12", "sessionCount": 0, "totalSpent": "0.000000"}
    assert (new_york["tz"], new_york["from"], new_york["to"]) == ("America/New_York", "2025-12-01", "2026-11-20")


def test_the_buckets_add_up_to_the_total(api, alice, history):
    body = api(alice).get(OVERVIEW, {"period": "year"}).json()

    assert [row["period"] for row in body["analytics"]] == ["2022", "2023", "2024", "2025", "2026"]
    assert body["analytics"][-1]["totalSpent"] == body["overview"]["totalSpent"]


def test_sessions_list_pages_and_filters(api, alice, history):
    client = api(alice)

    first = client.get(SESSIONS, {"pageSize": 3}).json()
    second = client.get(SESSIONS, {"pageSize": 3, "page": 2}).json()
    active = client.get(SESSIONS, {"status": "active"}).json()

    assert (first["count"], first["page"], first["totalPages"]) == (4, 1, 2)
    assert set(first) == {"sessions", "count", "page", "totalPages", "next", "previous"}  # every list's page
    assert first["previous"] is None and first["next"].endswith("?page=2&pageSize=3")
    assert [s["sessionId"] for s in first["sessions"] + second["sessions"]] == [
        str(history[name].session_id) for name in ("s4", "s3", "s2", "s1")
    ]
    s3 = first["sessions"][1]
    assert s3["service"] == {"id": history["seconds"].pk, "name": "Seconds", "category": "Data & Analytics"}
    assert (s3["totalSpent"], s3["vendorEarnings"], s3["durationSeconds"], s3["status"]) == (
        "1.235234",
        "1.111711",  # 1.235234 less floor(10%) = 0.123523
        1001,
        "completed",
    )
    assert [s["sessionId"] for s in active["sessions"]] == [str(history["s4"].session_id)]


def test_sessions_list_pages_as_every_list_does(api, alice, history):
    """20 to a page unless `pageSize` says otherwise, as every other list."""
    for _ in range(17):  # 21 sessions with alice's four
        streaming.session_start(user=alice, service=history["pass"])
    client = api(alice)

    first = client.get(SESSIONS).json()
    sized = client.get(SESSIONS, {"pageSize": 5, "page": 5}).json()

    assert (first["count"], first["totalPages"], len(first["sessions"])) == (21, 2, 20)
    assert (sized["page"], sized["totalPages"], len(sized["sessions"]), sized["next"]) == (5, 5, 1, None)


def test_a_running_session_lasts_no_longer_than_it_is_billed(api, alice, history, django_assert_num_queries):
    """s4 started 5 minutes ago and was never heard from: it ended as idle at its timeout, 60 s in,
    whoever bills it later. The dashboard said 300 s while the sweep bills 60. Its funds, which
    tell that instant too, come beside the page."""
    client = api(alice)
    with django_assert_num_queries(5):  # the user, the count, the page, its holds and payers' wallets
        listed = client.get(SESSIONS, {"status": "active"}).json()["sessions"]
    detail = client.get(f"{SESSIONS}/{history['s4'].session_id}").json()["session"]

    assert [(s["status"], s["durationSeconds"]) for s in listed] == [("active", 60)]
    assert (detail["status"], detail["durationSeconds"]) == ("active", 60)


def test_sessions_refuse_an_unknown_status(api, alice):
    response = api(alice).get(SESSIONS, {"status": "paused"})

    assert response.status_code == 400
    assert response.json()["errors"]["status"]


def test_session_detail_has_its_charge_timeline_from_the_ledger(api, alice, history):
    s1 = history["s1"]

    body = api(alice).get(f"{SESSIONS}/{s1.session_id}").json()["session"]

    assert body["totalSpent"] == "10.000000"
    assert [(c["amount"], c["cumulative"]) for c in body["charges"]] == [
        ("4.000000", "4.000000"),  # the sweep at 240 s
        ("6.000000", "10.000000"),  # the stop at 600 s
    ]
    assert [c["meteredUntil"] for c in body["charges"]] == ["2026-10-05T10:04:00Z", "2026-10-05T10:10:00Z"]
    assert body["charges"][0]["reference"] == f"charge:{s1.session_id}:1"


def test_a_session_total_equals_its_charges_and_the_session_row(api, alice, history):
    for name in ("s1", "s2", "s3"):
        session = history[name]
        body = api(alice).get(f"{SESSIONS}/{session.session_id}").json()["session"]
        charged = sum(charges_of(session))

        assert body["totalSpent"] == f"{session.total_cost / 1_000_000:.6f}"
        assert charged == session.total_cost


# --- Who sees what ---------------------------------------------------------------------------------


def test_a_user_sees_only_their_own_spending(api, bob, history):
    body = api(bob).get(OVERVIEW).json()

    assert body["overview"]["totalSpent"] == "3.000000"
    assert body["overview"]["totalSessions"] == 1
    assert ledger_spent(bob) == 3_000_000


def test_someone_elses_session_is_a_404(api, bob, history):
    response = api(bob).get(f"{SESSIONS}/{history['s1'].session_id}")

    assert response.status_code == 404
    assert api(bob).get(f"{SESSIONS}/{uuid.uuid4()}").status_code == 404
    assert api(bob).get(f"{SESSIONS}/not-a-uuid").status_code == 404


def test_a_user_cannot_name_another_user(api, alice, bob, history):
    response = api(bob).get(OVERVIEW, {"userId": alice.pk})

    assert response.status_code == 403


def test_a_user_cannot_list_another_users_sessions(api, alice, bob, history):
    response = api(bob).get(SESSIONS, {"userId": alice.pk})

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "sessions" not in response.json()


def test_vendors_have_no_user_dashboard(api, victor, history):
    assert api(victor).get(OVERVIEW).status_code == 403
    assert api(victor).get(SESSIONS).status_code == 403
    assert api(victor).get(f"{SESSIONS}/{history['s1'].session_id}").status_code == 403


def test_staff_see_any_users_dashboard_and_session(api, olga, alice, history):
    client = api(olga)

    assert client.get(OVERVIEW).status_code == 403  # staff name whose
    assert client.get(OVERVIEW, {"userId": alice.pk}).json()["overview"]["totalSpent"] == "13.735234"
    assert client.get(SESSIONS, {"userId": alice.pk}).json()["count"] == 4
    assert client.get(f"{SESSIONS}/{history['s1'].session_id}").status_code == 200
    assert client.get(OVERVIEW, {"userId": 10**9}).status_code == 404


# What staff need to look at a user's dashboard: the view permissions on what it shows.
USER_DASHBOARD = ("streaming.view_streamingsession", "wallets.view_ledgertransaction")


def test_staff_without_the_view_permissions_are_answered_as_a_user(api, stan, alice, history):
    for missing in (*USER_DASHBOARD, None):
        stan.user_permissions.clear()
        client = api(grant(stan, *(p for p in USER_DASHBOARD if p != missing)) if missing else stan)

        assert client.get(OVERVIEW, {"userId": alice.pk}).status_code == 403
        assert client.get(SESSIONS, {"userId": alice.pk}).status_code == 403
        assert client.get(f"{SESSIONS}/{history['s1'].session_id}").status_code == 404
        assert client.get(OVERVIEW, {"userId": 10**9}).status_code == 403  # nothing said of who exists


def test_staff_with_the_view_permissions_see_any_users_dashboard_and_session(api, stan, alice, history):
    client = api(grant(stan, *USER_DASHBOARD))

    assert client.get(OVERVIEW, {"userId": alice.pk}).json()["overview"]["totalSpent"] == "13.735234"
    assert client.get(SESSIONS, {"userId": alice.pk}).json()["count"] == 4
    assert client.get(f"{SESSIONS}/{history['s1'].session_id}").status_code == 200


@pytest.mark.parametrize("path", [OVERVIEW, SESSIONS])
@pytest.mark.parametrize(
    "wanted", ["abc", "\u0661", " {id}", "{id} ", "{id}.0", "1_0", "0", "-{id}", "+{id}", "{id}e0", str(2**63)]
)
def test_a_user_id_that_is_not_one_is_400_naming_it(api, olga, alice, path, wanted):
    """Not "no such user" (a 404), and never someone's dashboard: an Arabic-Indic one, a padded or a
    signed id read as int() would be that user's (alice's, here)."""
    response = api(olga).get(path, {"userId": wanted.format(id=alice.pk)})

    assert response.status_code == 400, (wanted, response.json())
    assert list(response.json()["errors"]) == ["userId"]


def test_a_well_formed_user_id_of_no_user_is_404(api, olga, alice, victor):
    assert api(olga).get(OVERVIEW, {"userId": 10**9}).json()["code"] == "not_found"
    assert api(olga).get(OVERVIEW, {"userId": victor.pk}).status_code == 404  # a vendor, no user


def test_anonymous_is_401(anon):
    assert anon.get(OVERVIEW).status_code == 401
    assert anon.get(SESSIONS).status_code == 401


def test_a_window_starting_mid_month_leaves_the_month_start_out_of_its_bucket(api, alice, history):
    body = api(alice).get(OVERVIEW, {"period": "month", "from": "2026-10-06", "to": "2026-11-20"}).json()

    assert body["analytics"] == [
        {"period": "2026-10", "sessionCount": 0, "totalSpent": "0.000000"},  # s1 on the 5th is outside
        {"period": "2026-11", "sessionCount": 3, "totalSpent": "3.735234"},
    ]
    assert body["overview"]["totalSpent"] == "13.735234"  # the overview is all time
