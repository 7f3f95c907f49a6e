"""The data migrations of accounts, run on rows as the code before them stored them."""

from __future__ import annotations

import logging
from importlib import import_module

import pytest
from django.apps import apps

from accounts.models import User
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


def run(migration: str, function: str) -> None:
    getattr(import_module(f"accounts.migrations.{migration}"), function)(apps, None)


def stored_as_before(user: User, **fields) -> User:
    """`user` with `fields` written as the code before the migration could store them."""
    User.objects.filter(pk=user.pk).update(**fields)
    user.refresh_from_db()
    return user


def test_emails_are_rewritten_in_their_one_form_per_mailbox(alice, bob, victor, anon):
    stored_as_before(bob, email="bob@ex\u00e4mple.com")
    stored_as_before(victor, email="victor@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")

    run("0006_emails_in_one_form_per_mailbox", "normalise_emails")

    emails = dict(User.objects.values_list("pk", "email"))
    assert (emails[alice.pk], emails[bob.pk], emails[victor.pk]) == (
        "alice@example.com",
        "bob@xn--exmple-cua.com",
        "victor@example.com",
    )
    login = anon.post("/api/v1/auth/login", {"email": "bob@EX\u00c4MPLE.com", "password": PASSWORD}, format="json")
    assert login.json()["user"]["id"] == bob.pk


def test_two_accounts_of_one_mailbox_are_left_and_reported_not_a_failed_migration(alice, bob, wanda, caplog):
    """Which of the two is the mailbox's owner's, only an operator can tell: the migration leaves the
    look-alike as it is, says so, and rewrites the others."""
    stored_as_before(bob, email="alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")
    stored_as_before(wanda, email="wanda@ex\u00e4mple.com")

    with caplog.at_level(logging.WARNING, logger="paygo.accounts"):
        run("0006_emails_in_one_form_per_mailbox", "normalise_emails")

    emails = dict(User.objects.values_list("pk", "email"))
    assert emails[alice.pk] == "alice@example.com"
    assert emails[bob.pk] == "alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"  # left
    assert emails[wanda.pk] == "wanda@xn--exmple-cua.com"
    assert [record.getMessage() for record in caplog.records] == [
        f"User {bob.pk}: the stored email is another spelling of user {alice.pk}'s mailbox; left as it is for an "
        "operator to resolve (it can no longer sign in)."
    ]


def test_an_email_whose_domain_has_no_ascii_form_is_left_and_reported(bob, caplog):
    stored_as_before(bob, email="bob@\u05e2ex.com")

    with caplog.at_level(logging.WARNING, logger="paygo.accounts"):
        run("0006_emails_in_one_form_per_mailbox", "normalise_emails")

    assert User.objects.get(pk=bob.pk).email == "bob@\u05e2ex.com"
    assert "has no ASCII form" in caplog.text


def test_an_email_longer_than_its_column_in_ascii_is_left_and_reported(alice, bob, wanda, anon, caplog):
    """120 characters as sign-up stored it before 0006, 264 in the ASCII form: the migration failed
    on it (a DataError, varchar(254)) and every later one stayed unapplied."""
    long_email = "a" * 60 + "@" + ".".join(["\u652f\u4ed8\u6d4b\u8bd5\u8d26\u6237"] * 8) + ".com"
    stored_as_before(bob, email=long_email)
    stored_as_before(wanda, email="wanda@ex\u00e4mple.com")

    with caplog.at_level(logging.WARNING, logger="paygo.accounts"):
        run("0006_emails_in_one_form_per_mailbox", "normalise_emails")

    emails = dict(User.objects.values_list("pk", "email"))
    assert (len(long_email), len(User.objects.normalize_email(long_email))) == (120, 264)
    assert emails[bob.pk] == long_email  # left
    assert emails[wanda.pk] == "wanda@xn--exmple-cua.com"
    assert emails[alice.pk] == "alice@example.com"
    assert [record.getMessage() for record in caplog.records] == [
        f"User {bob.pk}: the stored email has 264 characters in its ASCII form, more than the 254 an email may "
        "have; left as it is for an operator to resolve (it can no longer sign in)."
    ]
    login = anon.post("/api/v1/auth/login", {"email": long_email, "password": PASSWORD}, format="json")
    assert login.status_code == 401


def test_names_that_hide_characters_are_rewritten_as_they_show(alice, bob, victor, wanda, caplog):
    stored_as_before(bob, name="\u202etroppuS oGyaP\u202c")
    stored_as_before(victor, name="Victor\u200b\n\nPayGo security:\tyour wallet is locked")
    stored_as_before(wanda, name="\u200b\u200b")
    stored_as_before(alice, name="Cafe\u0301  Ole\u0301")  # hides nothing; the rule would only re-spell it

    with caplog.at_level(logging.WARNING, logger="paygo.accounts"):
        run("0007_names_as_visible_text", "names_as_visible_text")

    names = dict(User.objects.values_list("pk", "name"))
    assert names[bob.pk] == "troppuS oGyaP"
    assert names[victor.pk] == "Victor PayGo security: your wallet is locked"
    assert names[wanda.pk] == f"User {wanda.pk}"  # showed nothing
    assert names[alice.pk] == "Cafe\u0301  Ole\u0301"
    assert f"users {bob.pk}, {victor.pk}, {wanda.pk}." in caplog.text
