"""Idempotency keys are kept for a retention period, then forgotten by the daily expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from conftest import run_task
from wallets.idempotency import KEY_RETENTION, idempotency_keys_expire
from wallets.models import IdempotencyKey
from wallets.tasks import idempotency_expire_task

USDC = 1_000_000


def _key(user, key: str) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        user=user,
        key=key,
        method="POST",
        path="/api/v1/wallet/transfer",
        fingerprint="f",
        response_status=201,
        response_body={},
    )


@pytest.mark.django_db
def test_keys_older_than_the_retention_are_forgotten_and_newer_ones_kept(alice, bob, still_clock):
    _key(alice, "a-old")
    _key(bob, "b-old")
    still_clock.shift(timedelta(seconds=1))
    _key(alice, "a-edge")  # exactly the retention old when the expiry runs: kept
    still_clock.shift(KEY_RETENTION - timedelta(days=1))
    _key(alice, "a-new")
    still_clock.shift(timedelta(days=1))

    forgotten = idempotency_keys_expire(now=timezone.now())

    assert forgotten == 2
    assert set(IdempotencyKey.objects.values_list("user__email", "key")) == {
        (alice.email, "a-edge"),
        (alice.email, "a-new"),
    }


@pytest.mark.django_db
def test_the_daily_task_forgets_through_the_service(alice, still_clock):
    _key(alice, "old")
    still_clock.shift(KEY_RETENTION + timedelta(seconds=1))
    _key(alice, "new")

    assert run_task(idempotency_expire_task) == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert settings.CELERY_BEAT_SCHEDULE["idempotency-expire"]["task"] == idempotency_expire_task.name


# --- A key past its retention: a new request, whether or not the daily expiry has run yet ---------


@pytest.mark.django_db
@pytest.mark.parametrize("expiry_ran", [False, True], ids=["before-the-expiry", "after-the-expiry"])
def test_a_retry_past_the_retention_is_a_new_request_whether_or_not_the_expiry_ran(
    alice, bob, fund, still_clock, expiry_ran
):
    """Between day 7 and the daily expiry, a retry replayed or moved the money again depending on
    when the expiry had last run. A key past its retention is forgotten for the look-up too."""
    from conftest import client_for
    from wallets.tests.conftest import balance_of

    fund(alice, 10 * USDC)
    body = {"amount": "1", "recipientId": bob.pk}

    def transfer():
        return client_for(alice).post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="pay-bob")

    first = transfer()
    still_clock.shift(KEY_RETENTION - timedelta(minutes=1))
    within = transfer()
    still_clock.shift(timedelta(hours=2))  # day 7 and an hour
    if expiry_ran:
        assert run_task(idempotency_expire_task) == 1
    after = transfer()
    again = transfer()

    assert (first.status_code, within.status_code, within.json()) == (201, 201, first.json())
    assert within["Idempotent-Replayed"] == "true"
    assert (after.status_code, after.has_header("Idempotent-Replayed")) == (201, False)
    assert after.json()["transaction"]["transactionId"] != first.json()["transaction"]["transactionId"]
    assert (again.json(), again["Idempotent-Replayed"]) == (after.json(), "true")  # the new answer, kept
    assert (balance_of(bob), balance_of(alice)) == (2 * USDC, 8 * USDC)
    assert IdempotencyKey.objects.filter(user=alice, key="pay-bob").count() == 1


@pytest.mark.django_db
def test_the_expiry_deletes_in_bounded_batches_found_through_the_creation_index(alice, bob, still_clock, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conftest import plans_of
    from paygo import db

    for n in range(3):
        _key(alice, f"a-{n}")
        _key(bob, f"b-{n}")
    still_clock.shift(KEY_RETENTION + timedelta(seconds=1))
    _key(alice, "new")
    monkeypatch.setattr(db, "DELETE_BATCH", 4)

    with CaptureQueriesContext(connection) as expiring:
        assert run_task(idempotency_expire_task) == 6

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    plans = plans_of(expiring, "wallets_idempotencykey")
    finds = [(sql, plan) for sql, plan in plans if sql.startswith("SELECT")]
    deletes = [sql for sql, _ in plans if sql.startswith("DELETE")]
    assert (len(finds), len(deletes)) == (2, 2)  # 4 and 2: each batch's ids found, then deleted by id
    assert [sql for sql, plan in finds if "LIMIT 4" not in sql or "wallets_idempotencykey_created_at" not in plan] == []


def test_the_user_index_the_unique_key_index_makes_redundant_is_gone(django_db_blocker):
    """(user_id, key)'s unique index serves every look-up by user (the keys of a user deleted with
    it, the look-up of a key): an index of user_id alone was one more to write on every money POST."""
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'wallets_idempotencykey'")
        definitions = sorted(definition.split(" USING ")[1] for (definition,) in cursor.fetchall())

    assert definitions == ["btree (created_at)", "btree (id)", "btree (user_id, key)"]
