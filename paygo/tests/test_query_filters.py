"""One rule for every list's filters (paygo.api.filters): an empty value is no filter, and a value
that is there is applied or refused, never silently dropped. `read=null` is not a boolean, and
answering as if the filter were absent hands back what was not asked for. (Found by Schemathesis'
negative_data_rejection check.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("who", "path", "parameter"),
    [
        ("alice", "/api/v1/notifications?read=null", "read"),
        ("victor", "/api/v1/service/vendor/my-services?isActive=null", "isActive"),
        ("olga", "/api/v1/dashboard/admin/overview?refresh=null", "refresh"),
        ("alice", "/api/v1/dashboard/user/overview?to=yesterday", "to"),
    ],
)
def test_a_filter_that_is_no_value_is_a_400_naming_it(api, alice, victor, olga, who, path, parameter):
    caller = {"alice": alice, "victor": victor, "olga": olga}[who]

    response = api(caller).get(path)

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [parameter]


@pytest.mark.parametrize(
    ("who", "path", "empty"),
    [
        ("alice", "/api/v1/notifications", "read=&type="),
        ("victor", "/api/v1/service/vendor/my-services", "isActive=&category=&ordering="),
        ("alice", "/api/v1/service", "category=&minRate=&includeInactive=&vendorId="),
        ("alice", "/api/v1/dashboard/user/overview", "from=&to=&period=&userId="),
        ("alice", "/api/v1/dashboard/user/sessions", "status="),
        ("alice", "/api/v1/streams/my-sessions", "status="),
        ("alice", "/api/v1/consultations", "status="),
        ("alice", "/api/v1/wallet/transactions", "type=&token=&from=&to="),
    ],
)
def test_an_empty_filter_is_no_filter(api, alice, victor, fund, who, path, empty):
    caller = {"alice": alice, "victor": victor}[who]
    fund(alice, 5_000_000)
    plain = api(caller).get(path)

    filtered = api(caller).get(f"{path}?{empty}")

    assert plain.status_code == 200, plain.content
    assert (filtered.status_code, filtered.json()) == (200, plain.json())


def test_filters_with_values_still_filter(api, alice, victor, olga, fund):
    from notifications.services import notification_create

    fund(alice, 5_000_000)
    notification_create(user=alice, type="system", title="Hi", message="Hello")

    assert api(alice).get("/api/v1/notifications?read=true").json()["notifications"] == []
    assert api(alice).get("/api/v1/notifications?read=false").json()["notifications"] != []
    assert api(alice).get("/api/v1/wallet/transactions?type=deposit").json()["count"] == 1
    assert api(alice).get("/api/v1/wallet/transactions?type=transfer").json()["count"] == 0
    assert api(victor).get("/api/v1/service/vendor/my-services?isActive=true").status_code == 200


def test_refresh_recomputes_the_platform_overview(api, olga, alice, fund):
    assert api(olga).get("/api/v1/dashboard/admin/overview").json()["totals"]["deposits"] == "0.000000"
    fund(alice, 5_000_000)

    assert api(olga).get("/api/v1/dashboard/admin/overview").json()["totals"]["deposits"] == "0.000000"  # shared
    assert api(olga).get("/api/v1/dashboard/admin/overview?refresh=true").json()["totals"]["deposits"] == "5.000000"


def test_the_schema_says_an_empty_filter_is_allowed_and_an_empty_page_is_not(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/notifications"]["get"]["parameters"]}
    assert parameters["read"]["allowEmptyValue"] is True
    assert "allowEmptyValue" not in parameters["page"]
