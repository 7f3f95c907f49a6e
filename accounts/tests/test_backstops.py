"""The database's unique constraints back the services' checks: two creations at once are one row and
one 409, and only the constraint the check stands for is read as its 409."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, transaction
from rest_framework.exceptions import APIException

from accounts.models import Profile, User
from accounts.services import profile_create, user_create
from accounts.tests.conftest import held_while_the_other_waits
from conftest import in_thread, money_db


def _outcome(create) -> str:
    try:
        create()
    except APIException as exc:
        return f"{exc.status_code} {exc.detail['code']}"
    return "created"


def _race(create) -> tuple[str, str]:
    """create() in a transaction held open while a second create() runs (past its own check, which
    cannot see the first's row, to the unique index, where it waits for the first's commit)."""
    held, release, other_done = threading.Event(), threading.Event(), threading.Event()

    @in_thread
    def first():
        with transaction.atomic():
            create()
            held.set()
            release.wait(60)
        return "created"

    @in_thread
    def second():
        try:
            held.wait(60)
            return _outcome(create)
        finally:
            other_done.set()

    return held_while_the_other_waits(first, second, held=held, other_done=other_done, release=release)


@money_db
def test_two_sign_ups_of_one_email_at_once_are_one_account_and_a_409(db):
    outcomes = _race(lambda: user_create(email="carol@example.com", password=None, name="Carol"))

    assert outcomes == ("created", "409 email_taken")
    assert User.objects.filter(email="carol@example.com").count() == 1


@money_db
def test_two_creations_of_one_profile_at_once_are_one_profile_and_a_409(alice):
    outcomes = _race(lambda: profile_create(user=alice, kind="user"))

    assert outcomes == ("created", "409 profile_exists")
    assert Profile.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_a_sign_up_that_breaks_another_constraint_is_not_an_email_taken():
    """Only the email's unique constraints are "an account with this email exists": a row refused
    for another reason (here a role the table's check refuses: a caller's bug) stays the error it is."""
    with pytest.raises(IntegrityError, match="accounts_user_role_valid"):
        user_create(email="dave@example.com", password=None, name="Dave", role="pirate")
