"""Each dashboard answers in a fixed number of queries, with 10 sessions as with 1,000."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.forms.models import model_to_dict

from dashboards import rollup
from dashboards.tests.conftest import NOW, USDC, make_service
from streaming import pricing
from streaming import services as streaming
from streaming.models import StreamingSession
from streaming.sweep import sweep
from wallets import ledger
from wallets.models import Entry, Hold, LedgerTransaction, SystemAccount, TransactionKind

pytestmark = pytest.mark.django_db

# The JWT's user, then each endpoint's own reads (see dashboards/selectors.py); those that sum the
# ledger read the rollup's watermark once (dashboards/rollup.py).
EXPECTED = {
    "/api/v1/dashboard/user/overview": 6,
    "/api/v1/dashboard/user/sessions": 3,  # the user, the count, the page
    "/api/v1/dashboard/vendor/overview": 9,
    "/api/v1/dashboard/vendor/earnings": 4,  # earnings and sessions per bucket in one statement
    "/api/v1/wallet/analytics": 6,
}
ADMIN = "/api/v1/dashboard/admin/overview"
# With the ledger's health already checked (it runs on a schedule); one query names the top services
# and vendors (none is sent when the window has no charge).
ADMIN_EXPECTED = 10


def build(n: int, *, users, vendors) -> list:
    """n sessions spread over users, vendors' services, categories and the last year: a per-session
    fee charged at start, then every one stopped as idle by one sweep."""
    services = [
        make_service(vendor, category_name=name, unit="per_session", rate=USDC + i)
        for i, (vendor, name) in enumerate(
            [(vendors[0], "Time-Based"), (vendors[0], "Usage-Based"), (vendors[1], "Data & Analytics")]
        )
    ]
    first = NOW - timedelta(days=360)
    sessions = started_in_bulk(
        [(users[i % len(users)], services[i % len(services)], first + timedelta(hours=8 * i)) for i in range(n)]
    )
    sweep(now=datetime(2030, 1, 1, tzinfo=UTC))
    return sessions


def started_in_bulk(starts: list) -> list[StreamingSession]:
    """The sessions streaming.session_start opens for each (user, per-session service, time), with
    the same rows (test_sessions_started_in_bulk_are_those_session_start_opens): an empty hold, the
    session, and its fee charged at start in a ledger transaction of that time. Written set-based
    (the holds and the sessions in a statement each, one ledger posting per start): a thousand
    session_start calls, a dozen statements each, were most of this test's time."""
    assets, accounts, revenue = {}, {}, {}

    def account(user, asset):
        if (user.pk, asset.pk) not in accounts:
            accounts[user.pk, asset.pk] = ledger.account_for_user(user, asset)
        return accounts[user.pk, asset.pk]

    rows = []
    for user, service, at in starts:
        assert service.unit == "per_session" and not service.minimum_charge, "nothing is held at start"
        if service.token not in assets:
            asset = assets[service.token] = ledger.asset_get(service.token)
            revenue[asset.pk] = ledger.system_account(SystemAccount.PLATFORM_REVENUE, asset)
        asset = assets[service.token]
        rows.append((user, service, at, asset, account(user, asset), account(service.vendor, asset), uuid.uuid4()))
    holds = Hold.objects.bulk_create(
        [Hold(account=payer, amount=0, reference=f"session:{key}") for _, _, _, _, payer, _, key in rows]
    )
    sessions = StreamingSession.objects.bulk_create(
        [
            StreamingSession(
                session_id=key,
                user=user,
                vendor=service.vendor,
                service=service,
                start_time=at,
                asset=asset,
                rate=int(service.rate),
                unit=service.unit,
                free_seconds=service.free_seconds,
                minimum_charge=0,
                session_fee=int(service.rate),
                payer_account=payer,
                payee_account=payee,
                hold=hold,
                charged_until=at,
                last_heartbeat_at=at,
                client_info={},
                total_cost=int(service.rate),
                charge_count=1,
            )
            for (user, service, at, asset, payer, payee, key), hold in zip(rows, holds, strict=True)
        ]
    )
    for session, (_, service, at, asset, payer, payee, _) in zip(sessions, rows, strict=True):
        fee = pricing.platform_fee(session.session_fee, settings.PLATFORM_FEE_BPS)
        ledger.post_batch(
            [
                ledger.TxSpec(
                    kind=TransactionKind.CHARGE,
                    entries=[(payee.pk, session.session_fee - fee), (revenue[asset.pk].pk, fee)],
                    charges=[ledger.ChargeDebit(payer.pk, session.session_fee, session.pk, at, at, fee)],
                    memo=f"{service.name} (session fee)"[:500],
                    metadata={"sessionId": str(session.session_id), "sessionFee": True},
                )
            ],
            now=at,
        )
    return sessions


def test_sessions_started_in_bulk_are_those_session_start_opens(alice, bob, victor, wanda, fund):
    fund(alice, 100 * USDC)
    fund(bob, 100 * USDC)
    services = [
        make_service(victor, category_name="Time-Based", unit="per_session", rate=USDC),
        make_service(wanda, category_name="Data & Analytics", unit="per_session", rate=USDC + 7),
    ]
    starts = [(alice, services[0], NOW - timedelta(days=3)), (bob, services[1], NOW - timedelta(hours=5))]

    def written(sessions: list[StreamingSession]) -> list:
        """Every row the sessions' start wrote, by what it says rather than by its ids."""
        rows = []
        for session in StreamingSession.objects.filter(pk__in=[s.pk for s in sessions]).order_by("start_time"):
            hold = Hold.objects.get(pk=session.hold_id)
            entries = Entry.objects.filter(transaction__metadata__sessionId=str(session.session_id))
            transaction = LedgerTransaction.objects.get(metadata__sessionId=str(session.session_id))
            rows.append(
                (
                    {**model_to_dict(session, exclude=["id", "session_id", "hold"]), "created": session.created_at},
                    (hold.account_id, hold.amount, hold.reference == f"session:{session.session_id}", hold.status),
                    (transaction.kind, transaction.memo, transaction.reference, transaction.created_at),
                    sorted(
                        (e.account_id, e.amount, e.session_id == session.pk, e.billed_from, e.billed_until, e.fee)
                        for e in entries
                    ),
                )
            )
        return rows

    one_by_one = written([streaming.session_start(user=user, service=service, now=at) for user, service, at in starts])
    assert len(one_by_one) == 2 and all(len(entries) == 3 for *_, entries in one_by_one)

    assert written(started_in_bulk(starts)) == one_by_one


@pytest.mark.parametrize("n", [10, 1000])
def test_query_counts_do_not_grow_with_the_data(
    n, api, alice, bob, victor, wanda, olga, fund, django_assert_num_queries
):
    fund(alice, 10_000 * USDC)
    fund(bob, 10_000 * USDC)
    sessions = build(n, users=[alice, bob], vendors=[victor, wanda])
    # Half the ledger in the rollup, half in its tail: both are read, in the same statements.
    entry_ids = list(Entry.objects.order_by("id").values_list("id", flat=True))
    session_ids = [session.pk for session in sessions]
    rollup.rollup_advance(entries_through=entry_ids[len(entry_ids) // 2], sessions_through=session_ids[n // 2])
    clients = {"user": api(alice), "vendor": api(victor), "staff": api(olga)}
    clients["staff"].get(ADMIN, {"period": "week"})  # the ledger's health, checked once (figures are per window)

    for path, queries in EXPECTED.items():
        client = clients["vendor" if "/vendor/" in path else "user"]
        with django_assert_num_queries(queries):
            assert client.get(path, {"period": "day"}).status_code == 200
    with django_assert_num_queries(3):  # the user, the session, its charges
        assert clients["user"].get(f"/api/v1/dashboard/user/sessions/{sessions[0].session_id}").status_code == 200
    with django_assert_num_queries(ADMIN_EXPECTED):
        body = clients["staff"].get(ADMIN, {"period": "year"}).json()
    assert body["totals"]["charges"] == n
