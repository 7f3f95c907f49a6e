"""Paging parameters of every list endpoint: a page number or size that is not one is a 400."""

from __future__ import annotations

from urllib.parse import urlencode

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


PAGE_NUMBER = "A page number is a whole number from 1."
PAGE_SIZE = "A page size is a whole number from 1 to 100."
NO_LIMIT = "Not a parameter of this API: a page's size is pageSize, 1 to 100."


def _refused(query: dict[str, str], errors: dict[str, list[str]]):
    return pytest.param(query, errors, id=urlencode(query))


# Paging refused, and what the 400 says. `limit` is no paging parameter of PayGo's (the seed names
# none; the schema and README say `page` and `pageSize`): ignored, as an unknown parameter is, a
# client that sent it for 5 would get 20.
REFUSED = [
    *(
        _refused({"page": page}, {"page": [PAGE_NUMBER]})
        for page in ["-1", "0", "abc", "1.5", "", " 1", "1e3", "9" * 40]
    ),
    *(
        _refused({"pageSize": size}, {"pageSize": [PAGE_SIZE]})
        for size in ["-1", "+1", "0", "abc", "2.5", "", "101", "9" * 40]
    ),
    *(
        _refused(query, {"limit": [NO_LIMIT]})
        for query in [{"limit": "5"}, {"limit": "5", "pageSize": "5"}, {"limit": "x"}]
    ),
]


@pytest.mark.parametrize(("path", "who"), LISTS)
@pytest.mark.parametrize(("query", "errors"), REFUSED)
def test_paging_that_is_not_one_is_400_naming_it(read, path, who, query, errors):
    response = read(path, who, **query)

    assert response.status_code == 400, (path, query, response.json())
    assert response.json()["errors"] == errors


@pytest.mark.parametrize(("path", "who"), LISTS)
def test_good_paging_still_pages(read, path, who):
    assert read(path, who, page="1", pageSize="100").status_code == 200
    assert read(path, who, page="last", pageSize="1").status_code == 200
    assert read(path, who, page="2").status_code == 404  # past the last page: no such page


def test_every_list_is_counted_up_to_the_count_limit(api, alice, monkeypatch):
    """A list longer than Pagination.count_limit says count_limit, and is paged over its first
    count_limit items (page=last is the last of them); its shape is every list's."""
    from notifications import notify
    from paygo.api.pagination import Pagination

    monkeypatch.setattr(Pagination, "count_limit", 5)
    for n in range(8):
        notify(alice, "system", f"Notice {n}", "Hello.")
    client = api(alice)

    first = client.get("/api/v1/notifications", {"pageSize": 2}).json()
    last = client.get("/api/v1/notifications", {"pageSize": 2, "page": "last"}).json()

    assert (first["count"], first["totalPages"], first["page"]) == (5, 3, 1)
    assert [n["title"] for n in first["notifications"]] == ["Notice 7", "Notice 6"]
    assert (last["page"], [n["title"] for n in last["notifications"]], last["next"]) == (3, ["Notice 3"], None)
    assert client.get("/api/v1/notifications", {"pageSize": 2, "page": 4}).status_code == 404
