"""Reading consultations: the caller's list, one consultation with its messages and latest calls, its
calls, the vendor inbox; who may read what; unread counts; constant queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import grant
from consultations import services
from consultations.models import Message
from consultations.selectors import CALLS_SHOWN
from consultations.tests.conftest import INBOX, LIST, committed, detail_url
from streaming.services import session_stop
from streaming.tests.conftest import USDC

pytestmark = pytest.mark.django_db


def say(consultation, sender, text: str, *, at=None) -> Message:
    with committed():
        return services.message_send(consultation=consultation, sender=sender, body=text, now=at)


def ids(response, key: str = "consultations") -> list[int]:
    return [item["id"] for item in response.json()[key]]


def calls_url(consultation) -> str:
    return f"{LIST}/{consultation.pk}/calls"


def hold_calls(consultation, how_many: int, clock) -> list[str]:
    """`how_many` one-minute calls, a minute apart (1 USDC each, paid by the consultation's user, who
    is funded for them); their session ids, newest first."""
    from wallets.tests.conftest import fund_wallet

    fund_wallet(consultation.user, how_many * USDC)
    held = []
    for _ in range(how_many):
        with committed():
            call = services.consultation_call_start(consultation=consultation, actor=consultation.user)
            clock.move(seconds=60)
            session_stop(session=call, reason="user")
        clock.move(seconds=60)
        held.append(str(call.session_id))
    return held[::-1]


def call_running(consultation) -> None:
    """One more call, left running (its funds read to tell where it ends: its hold, its payer's wallet)."""
    from wallets.tests.conftest import fund_wallet

    fund_wallet(consultation.user, USDC)
    with committed():
        services.consultation_call_start(consultation=consultation, actor=consultation.user)


# --- GET /consultations -------------------------------------------------------------------------------


def test_the_list_as_user_and_as_vendor(api, alice, bob, victor, wanda, consult, make_service):
    mine = consult()
    bobs = consult(user=bob)
    with_wanda = consult(service=make_service(vendor=wanda))

    assert ids(api(alice).get(LIST)) == [with_wanda.pk, mine.pk]
    assert ids(api(bob).get(LIST)) == [bobs.pk]
    assert ids(api(victor).get(LIST)) == [bobs.pk, mine.pk]
    assert ids(api(wanda).get(LIST)) == [with_wanda.pk]


def test_the_list_item(api, alice, victor, consult):
    consultation = consult(text="First question")
    reply = say(consultation, victor, "An answer")

    response = api(alice).get(LIST)

    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 1 and data["page"] == 1 and data["totalPages"] == 1
    (item,) = data["consultations"]
    assert item["status"] == "pending"
    assert item["vendor"] == {"id": victor.pk, "name": "Victor"}
    assert item["service"]["id"] == consultation.service_id
    assert item["date"] == reply.created_at.isoformat().replace("+00:00", "Z")
    assert item["lastMessage"]["id"] == reply.pk
    assert item["lastMessage"]["body"] == "An answer"
    assert item["unreadCount"] == 1


def test_staff_and_outsiders_have_empty_lists(api, bob, olga, wanda, consult):
    consult()

    for caller in (bob, olga, wanda):
        response = api(caller).get(LIST)
        assert response.status_code == 200
        assert response.json()["consultations"] == []


def test_anonymous_is_401(anon):
    assert anon.get(LIST).status_code == 401


def test_newest_activity_first(api, alice, victor, consult, make_service):
    first, second, third = consult(), consult(service=make_service()), consult(service=make_service())
    start = timezone.now() + timedelta(minutes=1)
    say(third, victor, "early", at=start)
    say(second, alice, "later", at=start + timedelta(minutes=1))
    say(first, victor, "latest", at=start + timedelta(minutes=2))
    say(third, alice, "a new question", at=start + timedelta(minutes=3))

    assert ids(api(alice).get(LIST)) == [third.pk, first.pk, second.pk]


def test_unread_counts_are_the_other_sides_unread_messages(api, alice, victor, consult):
    consultation = consult(text="one")
    say(consultation, alice, "two")
    say(consultation, victor, "three")

    def unread(user) -> int:
        return api(user).get(LIST).json()["consultations"][0]["unreadCount"]

    assert (unread(alice), unread(victor)) == (1, 2)
    api(victor).get(detail_url(consultation))
    assert (unread(alice), unread(victor)) == (1, 0)


def test_the_list_is_paginated(api, alice, consult, make_service):
    made = [consult(service=make_service()) for _ in range(3)]

    response = api(alice).get(LIST, {"pageSize": 2, "page": 2})

    assert response.json()["count"] == 3
    assert response.json()["totalPages"] == 2
    assert ids(response) == [made[0].pk]


def test_filter_by_status(api, alice, consult, make_service):
    made = {status: consult(status, service=make_service()) for status in ("pending", "accepted", "active", "rejected")}

    for status, consultation in made.items():
        response = api(alice).get(LIST, {"status": status})
        assert ids(response) == [consultation.pk], status
        assert response.json()["consultations"][0]["status"] == status
    assert ids(api(alice).get(LIST, {"status": "completed"})) == []
    assert len(ids(api(alice).get(LIST, {"status": ""}))) == 4


def test_an_unknown_status_filter_is_a_400(api, alice):
    response = api(alice).get(LIST, {"status": "archived"})

    assert response.status_code == 400
    assert "status" in response.json()["errors"]


@pytest.mark.parametrize("how_many", [1, 20])
def test_the_list_takes_a_constant_number_of_queries(
    api, alice, victor, consult, make_service, django_assert_num_queries, how_many
):
    for index in range(how_many):
        consultation = consult(service=make_service(), status="active" if index % 3 == 0 else "accepted")
        say(consultation, victor, f"reply {index}")
    client = api(alice)

    # The user (authentication), the count, the page with its last message ids, statuses and unread
    # counts, and the page's last messages.
    with django_assert_num_queries(4):
        response = client.get(LIST)

    assert len(response.json()["consultations"]) == how_many
    assert all(item["lastMessage"]["body"].startswith("reply") for item in response.json()["consultations"])


# --- GET /consultations/<id> --------------------------------------------------------------------------


def test_a_participant_reads_a_consultation_with_its_messages(api, alice, victor, consult):
    consultation = consult(text="question")
    answer = say(consultation, victor, "answer")

    response = api(alice).get(detail_url(consultation))

    assert response.status_code == 200
    data = response.json()
    assert data["consultation"]["id"] == consultation.pk
    assert data["consultation"]["status"] == "pending"
    assert data["consultation"]["user"] == {"id": alice.pk, "name": "Alice"}
    assert data["consultation"]["calls"] == []
    assert data["consultation"]["callCount"] == 0
    assert data["consultation"]["totalCallCost"] == "0.000000"
    assert data["consultation"]["callToken"] == "USDC"
    assert [m["body"] for m in data["messages"]] == ["answer", "question"]  # newest first
    assert data["messages"][0]["id"] == answer.pk
    assert data["messages"][0]["senderId"] == victor.pk
    assert data["count"] == 2


def test_opening_it_reads_the_other_sides_messages_only(api, alice, victor, consult):
    consultation = consult(text="question")
    say(consultation, victor, "answer 1")
    say(consultation, victor, "answer 2")
    say(consultation, alice, "thanks")

    response = api(alice).get(detail_url(consultation))

    read = {m.body: m.read_at for m in Message.objects.all()}
    assert read["answer 1"] is not None and read["answer 2"] is not None
    assert read["question"] is None and read["thanks"] is None
    # The response shows them read already.
    assert {m["body"]: m["readAt"] is not None for m in response.json()["messages"]} == {
        "thanks": False,
        "answer 2": True,
        "answer 1": True,
        "question": False,
    }


def test_staff_read_any_consultation_without_marking_anything_read(api, olga, consult):
    consultation = consult()

    response = api(olga).get(detail_url(consultation))

    assert response.status_code == 200
    assert response.json()["consultation"]["id"] == consultation.pk
    assert Message.objects.filter(read_at__isnull=False).count() == 0


CONSULTATION_VIEW = (
    "consultations.view_consultation",
    "consultations.view_message",
    "consultations.view_consultationcall",
)


def test_staff_read_a_consultation_with_the_view_permissions_on_it_its_messages_and_calls(api, stan, consult):
    consultation = consult()

    for missing in CONSULTATION_VIEW:
        stan.user_permissions.clear()
        partial = api(grant(stan, *(p for p in CONSULTATION_VIEW if p != missing)))
        assert partial.get(detail_url(consultation)).status_code == 404, missing
    response = api(grant(stan, *CONSULTATION_VIEW)).get(detail_url(consultation))

    assert response.status_code == 200
    assert response.json()["consultation"]["id"] == consultation.pk
    assert Message.objects.filter(read_at__isnull=False).count() == 0


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
def test_anyone_else_gets_a_404(api, bob, wanda, stan, consult, who):
    consultation = consult()
    outsider = {"bob": bob, "wanda": wanda, "stan": stan}[who]

    response = api(outsider).get(detail_url(consultation))

    assert response.status_code == 404
    assert response.json()["message"] == "No such consultation."
    assert Message.objects.filter(read_at__isnull=False).count() == 0


def test_unknown_ids_are_404_and_anonymous_401(api, anon, alice, consult):
    consultation = consult()

    assert api(alice).get(f"{LIST}/999999").status_code == 404
    assert api(alice).get(f"{LIST}/not-a-number").status_code == 404
    assert anon.get(detail_url(consultation)).status_code == 401


def test_messages_are_paginated(api, alice, victor, consult):
    consultation = consult(text="m0")
    start = timezone.now()
    for index in range(1, 5):
        say(consultation, victor, f"m{index}", at=start + timedelta(seconds=index))

    first = api(alice).get(detail_url(consultation), {"pageSize": 2}).json()
    last = api(alice).get(detail_url(consultation), {"pageSize": 2, "page": 3}).json()

    assert first["count"] == 5 and first["totalPages"] == 3
    assert [m["body"] for m in first["messages"]] == ["m4", "m3"]
    assert [m["body"] for m in last["messages"]] == ["m0"]
    assert last["consultation"]["id"] == consultation.pk
    # Opening any page reads every message of the other side.
    assert not Message.objects.filter(sender=victor, read_at__isnull=True).exists()


@pytest.mark.parametrize("query", [{"page": "abc"}, {"page": "0"}, {"pageSize": "-1"}, {"limit": "x"}])
def test_bad_paging_of_the_messages_is_a_400_that_reads_nothing(api, alice, victor, consult, query):
    consultation = consult()
    say(consultation, victor, "answer")

    response = api(alice).get(detail_url(consultation), query)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == list(query)
    assert Message.objects.filter(read_at__isnull=False).count() == 0


def test_a_page_past_the_last_is_a_404_that_reads_nothing(api, alice, victor, consult):
    consultation = consult()
    say(consultation, victor, "answer")

    response = api(alice).get(detail_url(consultation), {"page": 5})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Message.objects.filter(read_at__isnull=False).exists()


def test_the_detail_shows_the_latest_calls_and_counts_them_all(api, alice, consult, clock):
    consultation = consult("accepted")
    held = hold_calls(consultation, CALLS_SHOWN + 5, clock)

    shown = api(alice).get(detail_url(consultation)).json()["consultation"]

    assert [call["sessionId"] for call in shown["calls"]] == held[:CALLS_SHOWN]  # newest first
    assert shown["callCount"] == CALLS_SHOWN + 5
    assert shown["totalCallCost"] == f"{CALLS_SHOWN + 5}.000000"  # every call's, not only those shown
    assert shown["callToken"] == "USDC"


# --- GET /consultations/<id>/calls --------------------------------------------------------------------


def test_a_consultations_calls_are_paginated_newest_first(api, alice, victor, consult, clock):
    consultation = consult("accepted")
    held = hold_calls(consultation, 5, clock)

    first = api(alice).get(calls_url(consultation), {"pageSize": 2}).json()
    last = api(victor).get(calls_url(consultation), {"pageSize": 2, "page": "last"}).json()

    assert (first["count"], first["totalPages"]) == (5, 3)
    assert [call["sessionId"] for call in first["calls"]] == held[:2]
    assert [call["sessionId"] for call in last["calls"]] == held[4:]
    assert first["calls"][0] == api(alice).get(detail_url(consultation)).json()["consultation"]["calls"][0]
    assert first["calls"][0]["totalCost"] == "1.000000"


def test_a_consultation_without_calls_has_an_empty_first_page(api, alice, consult):
    consultation = consult()

    response = api(alice).get(calls_url(consultation))

    assert response.status_code == 200
    assert (response.json()["calls"], response.json()["count"]) == ([], 0)
    assert api(alice).get(calls_url(consultation), {"page": 2}).status_code == 404


def test_staff_read_its_calls_as_they_read_the_consultation(api, stan, consult):
    consultation = consult("active")

    for missing in CONSULTATION_VIEW:
        stan.user_permissions.clear()
        partial = api(grant(stan, *(p for p in CONSULTATION_VIEW if p != missing)))
        assert partial.get(calls_url(consultation)).status_code == 404, missing
    response = api(grant(stan, *CONSULTATION_VIEW)).get(calls_url(consultation))

    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
def test_anyone_else_gets_a_404_for_its_calls(api, bob, wanda, stan, consult, who):
    consultation = consult("active")
    outsider = {"bob": bob, "wanda": wanda, "stan": stan}[who]

    response = api(outsider).get(calls_url(consultation))

    assert response.status_code == 404
    assert response.json()["message"] == "No such consultation."


def test_its_calls_are_not_for_anonymous_nor_unknown_ids(api, anon, alice, consult):
    consultation = consult("active")

    assert anon.get(calls_url(consultation)).status_code == 401
    assert api(alice).get(f"{LIST}/999999/calls").status_code == 404


@pytest.mark.parametrize("how_many", [1, 25])
def test_its_calls_take_a_constant_number_of_queries(api, alice, consult, clock, django_assert_num_queries, how_many):
    consultation = consult("accepted")
    hold_calls(consultation, how_many, clock)
    call_running(consultation)
    client = api(alice)

    # The user, the consultation, the count, the page.
    with django_assert_num_queries(4):
        response = client.get(calls_url(consultation))

    assert len(response.json()["calls"]) == min(how_many + 1, 20)


# --- GET /consultations/vendor/inbox ------------------------------------------------------------------


def test_the_inbox_puts_pending_first_then_latest_message(api, alice, bob, victor, consult, make_service):
    start = timezone.now() + timedelta(minutes=1)
    accepted_old = consult("accepted")
    pending_old = consult(user=bob, service=make_service())
    closed = consult("completed", service=make_service())
    accepted_new = consult("accepted", user=bob, service=make_service())
    pending_new = consult(service=make_service())
    say(accepted_old, alice, "1", at=start)
    say(pending_old, bob, "2", at=start + timedelta(seconds=1))
    say(accepted_new, bob, "3", at=start + timedelta(seconds=2))
    say(pending_new, alice, "4", at=start + timedelta(seconds=3))

    response = api(victor).get(INBOX)

    assert response.status_code == 200
    assert ids(response) == [pending_new.pk, pending_old.pk, accepted_new.pk, accepted_old.pk, closed.pk]
    assert ids(api(victor).get(INBOX, {"status": "pending"})) == [pending_new.pk, pending_old.pk]
    assert response.json()["consultations"][0]["unreadCount"] == 2


def test_a_vendor_sees_only_their_own_inbox(api, wanda, consult):
    consult()

    assert api(wanda).get(INBOX).json()["consultations"] == []


@pytest.mark.parametrize("who", ["alice", "bob", "olga"])
def test_the_inbox_is_for_vendors_only(api, alice, bob, olga, consult, who):
    consult()

    response = api({"alice": alice, "bob": bob, "olga": olga}[who]).get(INBOX)

    assert response.status_code == 403


def test_the_inbox_takes_a_constant_number_of_queries(api, victor, consult, make_service, django_assert_num_queries):
    for _ in range(5):
        consult(service=make_service())
    client = api(victor)

    with django_assert_num_queries(4):
        response = client.get(INBOX)

    assert len(response.json()["consultations"]) == 5


@pytest.mark.parametrize(("replies", "calls"), [(0, 1), (30, CALLS_SHOWN + 5)])
def test_the_detail_takes_a_constant_number_of_queries(
    api, alice, victor, consult, clock, django_assert_num_queries, replies, calls
):
    consultation = consult("accepted")
    hold_calls(consultation, calls, clock)
    call_running(consultation)
    for index in range(replies):
        say(consultation, victor, f"reply {index}")
    client = api(alice)

    # The user, the consultation with its status, marking read (the thread's lock, its
    # notifications, its messages), the count, the page, the latest calls, what all of them cost;
    # the marking and the page in one transaction (a savepoint and its release here, inside the test's).
    with django_assert_num_queries(11):
        response = client.get(detail_url(consultation))

    assert len(response.json()["messages"]) == min(replies + 1, 20)
    assert len(response.json()["consultation"]["calls"]) == min(calls + 1, CALLS_SHOWN)
