"""A session started while staff deactivate its vendor (or its user): the start and the deactivation
take turns on the two accounts' rows, so the session is refused or it is stopped by the deactivation;
never one left billing for an account that is gone."""

from __future__ import annotations

import pytest
from rest_framework import exceptions

from accounts.models import User
from accounts.tests.conftest import while_deactivating, while_writing
from conftest import money_db
from marketplace.models import Service
from streaming.models import StreamingSession
from streaming.services import session_start
from streaming.tests.conftest import USDC
from wallets.tests.conftest import fund_wallet


def start_while_deactivating(who, user, service) -> object:
    """A session start by `user` on `service` while `who` is being deactivated: what it answered."""
    return while_deactivating(
        who,
        # As a request has them: read before the deactivation committed (active).
        lambda: session_start(
            user=User.objects.get(pk=user.pk), service=Service.objects.select_related("vendor").get(pk=service.pk)
        ),
    )


@money_db
@pytest.mark.parametrize(
    ("deactivated", "refusal"),
    [
        ("victor", {"service_id": ["No such service."]}),  # the vendor: his service is gone
        ("alice", "This account is no longer active."),  # the user who starts it
    ],
)
def test_a_session_started_while_its_vendor_or_user_is_being_deactivated_is_refused(
    alice, victor, make_service, deactivated, refusal
):
    service = make_service()
    fund_wallet(alice, 10 * USDC)

    refused = start_while_deactivating({"victor": victor, "alice": alice}[deactivated], alice, service)

    assert isinstance(refused, exceptions.APIException), refused
    assert refused.detail == refusal
    assert not StreamingSession.objects.exists()


@money_db
def test_a_session_started_while_its_service_is_being_retired_is_refused(alice, victor, make_service):
    """The start read the service for sale; the retirement (which stops the service's sessions) had
    not committed: the start waits for the service's row and is then refused, rather than making a
    session on a retired service that nobody stops."""
    from marketplace.services import service_delete

    service = make_service()
    fund_wallet(alice, 10 * USDC)

    refused = while_writing(
        lambda: service_delete(service=Service.objects.get(pk=service.pk)),
        lambda: session_start(
            user=User.objects.get(pk=alice.pk), service=Service.objects.select_related("vendor").get(pk=service.pk)
        ),
    )

    assert isinstance(refused, exceptions.APIException), refused
    assert refused.detail == {"service_id": ["No such service."]}
    assert not StreamingSession.objects.exists()
