"""Paging parameters of every list endpoint: a page number or size that is not one is a 400."""

from __future__ import annotations

import pytest

from streaming.tests.conftest import make_service  # noqa: F401

pytestmark = pytest.mark.django_db

# Every paginated list, hand-paginated ones included, and who may read it.
LISTS = [
    ("/api/v1/service", None),
    ("/api/v1/service/vendor/my-services", "victor"),
    ("/api/v1/vendorprofiles/all", None),
    ("/api/v1/wallet/transactions", "alice"),
    ("/api/v1/wallet/withdrawals", "alice"),
    ("/api/v1/notifications", "alice"),
    ("/api/v1/consultations", "alice"),
    ("/api/v1/consultations/vendor/inbox", "victor"),
    ("/api/v1/consultations/{consultation}/calls", "alice"),
    ("/api/v1/streams/my-sessions", "alice"),
    ("/api/v1/streams/active", "alice"),
    ("/api/v1/dashboard/user/sessions", "alice"),
]


@pytest.fixture
def consultation(alice, make_service):  # noqa: F811 (the fixture imported above)
    from consultations.services import consultation_create

    service = make_service()
    consultation, _ = consultation_create(
        user=alice, vendor_id=service.vendor_id, service_id=service.pk, initial_message="Hello"
    )
    return consultation


@pytest.fixture
def read(request, api, anon):
    def get(path: str, who: str | None, **query):
        if "{consultation}" in path:  # a list of one object's: alice's consultation
            path = path.format(consultation=request.getfixturevalue("consultation").pk)
        client = api(request.getfixturevalue(who)) if who else anon
        return client.get(path, query)

    return get


@pytest.mark.parametrize(("path", "who"), LISTS)
@pytest.mark.parametrize("page", ["-1", "0", "abc", "1.5", "", " 1", "1e3", "9" * 40])
def test_a_page_that_is_not_a_page_number_is_400(read, path, who, page):
    response = read(path, who, page=page)

    assert response.status_code == 400, (path, page, response.json())
    assert response.json()["errors"] == {"page": ["A page number is a whole number from 1."]}


@pytest.mark.parametrize(("path", "who"), LISTS)
@pytest.mark.parametrize("name", ["pageSize", "limit"])
@pytest.mark.parametrize("size", ["-1", "0", "abc", "2.5", "", "101", "9" * 40])
def test_a_page_size_that_is_not_one_is_400(read, path, who, name, size):
    response = read(path, who, **{name: size})

    assert response.status_code == 400, (path, name, size, response.json())
    assert response.json()["errors"] == {name: ["A page size is a whole number from 1 to 100."]}


@pytest.mark.parametrize(("path", "who"), LISTS)
def test_good_paging_still_pages(read, path, who):
    assert read(path, who, page="1", pageSize="100").status_code == 200
    assert read(path, who, page="last", limit="1").status_code == 200
    assert read(path, who, page="2").status_code == 404  # past the last page: no such page
