"""A filter the client names is applied or refused, never silently dropped: `read=null` or an empty
date is not a value, and answering as if the filter were absent hands back what was not asked for.
(Found by Schemathesis' negative_data_rejection check.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("who", "path", "parameter"),
    [
        ("alice", "/api/v1/notifications?read=null", "read"),
        ("victor", "/api/v1/service/vendor/my-services?isActive=null", "isActive"),
        ("alice", "/api/v1/dashboard/user/overview?to=", "to"),
        ("alice", "/api/v1/dashboard/user/overview?from=", "from"),
        ("victor", "/api/v1/dashboard/vendor/earnings?to=", "to"),
        ("olga", "/api/v1/dashboard/admin/overview?from=", "from"),
        ("olga", "/api/v1/dashboard/admin/overview?refresh=null", "refresh"),
        ("alice", "/api/v1/dashboard/user/sessions?status=", "status"),
        ("alice", "/api/v1/streams/my-sessions?status=", "status"),
        ("alice", "/api/v1/consultations?status=", "status"),
        ("victor", "/api/v1/consultations/vendor/inbox?status=", "status"),
        ("alice", "/api/v1/wallet/transactions?type=", "type"),
        ("alice", "/api/v1/wallet/transactions?from=", "from"),
    ],
)
def test_a_filter_that_is_no_value_is_a_400_naming_it(api, alice, victor, olga, who, path, parameter):
    caller = {"alice": alice, "victor": victor, "olga": olga}[who]

    response = api(caller).get(path)

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [parameter]


def test_the_same_filters_with_values_still_filter(api, alice, victor):
    assert api(alice).get("/api/v1/notifications?read=false").status_code == 200
    assert api(victor).get("/api/v1/service/vendor/my-services?isActive=true").status_code == 200
    assert api(alice).get("/api/v1/dashboard/user/overview?from=2026-01-01&to=2026-01-31").status_code == 200
    assert api(alice).get("/api/v1/dashboard/user/sessions?status=active").status_code == 200
    assert api(alice).get("/api/v1/streams/my-sessions?status=active").status_code == 200
    assert api(alice).get("/api/v1/consultations?status=pending").status_code == 200
    assert api(victor).get("/api/v1/consultations/vendor/inbox?status=pending").status_code == 200
    assert api(alice).get("/api/v1/wallet/transactions?type=deposit&from=2026-01-01").status_code == 200


def test_refresh_recomputes_the_platform_overview(api, olga, alice, fund):
    assert api(olga).get("/api/v1/dashboard/admin/overview").json()["totals"]["deposits"] == "0.000000"
    fund(alice, 5_000_000)

    assert api(olga).get("/api/v1/dashboard/admin/overview").json()["totals"]["deposits"] == "0.000000"  # shared
    assert api(olga).get("/api/v1/dashboard/admin/overview?refresh=true").json()["totals"]["deposits"] == "5.000000"
