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
