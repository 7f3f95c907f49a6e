"""The operators' admin: consultations with their messages and calls, read-only and escaped."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(olga) -> Client:
    client = Client()
    client.force_login(olga)
    return client


def test_changelist_with_filters_and_search(operator, bob, consult, make_service, wanda):
    accepted = consult("accepted")
    active = consult("active", service=make_service())
    bobs = consult("rejected", user=bob, service=make_service(vendor=wanda))

    page = operator.get("/admin/consultations/consultation/")
    running = operator.get("/admin/consultations/consultation/?status=active")
    searched = operator.get("/admin/consultations/consultation/?q=wanda")

    assert page.status_code == 200
    assert running.status_code == 200 and searched.status_code == 200

    def listed(response) -> set[int]:
        return set(response.context["cl"].result_list.values_list("pk", flat=True))

    assert listed(page) == {accepted.pk, active.pk, bobs.pk}
    assert listed(running) == {active.pk}
    assert listed(searched) == {bobs.pk}
    assert b"Active (call running)" in running.content


def test_the_change_page_is_read_only_and_escapes_messages(operator, consult):
    consultation = consult("active", text="<script>alert('x')</script>")

    page = operator.get(f"/admin/consultations/consultation/{consultation.pk}/change/")

    assert page.status_code == 200
    assert b"<script>alert(" not in page.content
    assert b"&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page.content
    assert b'name="status"' not in page.content  # nothing editable
    assert b"0.000000 USDC" in page.content  # the running call, charged nothing yet
    assert operator.get("/admin/consultations/consultation/add/").status_code == 403
    assert operator.post(f"/admin/consultations/consultation/{consultation.pk}/delete/").status_code == 403


def test_only_staff_get_in(bob, consult):
    consultation = consult()
    client = Client()
    client.force_login(bob)

    response = client.get(f"/admin/consultations/consultation/{consultation.pk}/change/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
