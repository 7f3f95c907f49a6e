"""The access matrix: every API route and method, tried by every kind of caller, against a table.

The routes are read from Django's URL map (every pattern under api/, through nested includes), and
the methods from each view. A route or method missing from the table fails the test, and so does a
table entry that names no route: a new endpoint cannot ship without saying who may call it.

The callers (columns):

    anon    no token
    bob     a user who owns none of the objects: the outsider
    wanda   a vendor who owns none of the objects: another vendor
    stan    staff with no permissions (he may log into the admin, which refuses him every page)
    staff   staff holding exactly the permissions of the row's last column, and no other
    owner   `name:answer`: the member of the cast the object is (alice: her session, consultation,
            withdrawal, image, notification, profile; victor: his service; olga: her admin profile),
            or, on a route without an object, one it is meant for; `-` where there is none

What each gets: `ok` (any 2xx), or the exact status (400: let through, then refused on the
request's content, which is minimal on purpose). Where a row has no permission (`-`), nothing lets
staff do more than anyone else there: `staff` is then answered as `stan`. The query variants of a
route (`?userId=...`) are its staff-only reads; `{name}` is the id of that member of the cast; `/`
is the API's own root, /api/v1/.
The matrix checks statuses; where a permission changes what a list holds rather than whether it
answers (streams/active, vendorprofiles/all, service?includeInactive), the app's tests check the
content with stan and with staff holding the permission.

The WebSocket routes (paygo/routing.py) are checked by their consumers' tests, named in WEBSOCKETS
(stan's socket on someone else's session is closed 4403, streaming/tests/test_live.py); a new socket
route fails test_every_websocket_route_names_its_tests until it is added there.

Each (row, caller) is a test of its own, rolled back by pytest-django, so that no request sees
another's writes; the objects they share are built once for the module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.urls import URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.models import Image, Role
from accounts.services import profile_create, token_pair_for, user_create
from conftest import PASSWORD, grant

MATRIX = """
route                                          method  anon  bob   wanda stan  staff owner       permission
/                                              GET     ok    ok    ok    ok    ok    -           -
health                                         GET     ok    ok    ok    ok    ok    -           -
auth/register                                  POST    400   400   400   400   400   -           -
auth/login                                     POST    400   400   400   400   400   -           -
auth/refresh                                   POST    400   400   400   400   400   -           -
auth/logout                                    POST    400   400   400   400   400   -           -
auth/me                                        GET     401   ok    ok    ok    ok    -           -

wallet/analytics                               GET     401   ok    ok    ok    ok    -           -
wallet/deposit                                 POST    401   400   400   400   400   alice:400   -
wallet/withdraw                                POST    401   400   400   400   400   alice:400   -
wallet/withdrawals                             GET     401   ok    ok    ok    ok    alice:ok    -
wallet/withdrawals/<uuid:pk>                   GET     401   404   404   404   404   alice:ok    -
wallet/balance                                 GET     401   ok    ok    ok    ok    alice:ok    -
wallet/transfer                                POST    401   400   400   400   400   alice:400   -
wallet/transactions                            GET     401   ok    ok    ok    ok    alice:ok    -
wallet/address                                 GET     401   ok    ok    ok    ok    alice:ok    -
wallet/supported-tokens                        GET     ok    ok    ok    ok    ok    -           -
wallet/swap                                    POST    401   400   400   400   400   alice:400   -
wallet/webhooks/chipi                          POST    401   401   401   401   401   -           -

dashboard/user/overview                        GET     401   ok    403   ok    ok    alice:ok    -
dashboard/user/overview?userId={alice}         GET     401   403   403   403   ok    alice:403   USER_DASHBOARD
dashboard/user/sessions                        GET     401   ok    403   ok    ok    alice:ok    -
dashboard/user/sessions?userId={alice}         GET     401   403   403   403   ok    alice:403   USER_DASHBOARD
dashboard/user/sessions/<str:session_id>       GET     401   404   403   404   ok    alice:ok    USER_DASHBOARD
dashboard/vendor/overview                      GET     401   403   ok    403   403   victor:ok   -
dashboard/vendor/overview?vendorId={victor}    GET     401   403   403   403   ok    victor:403  VENDOR_DASHBOARD
dashboard/vendor/earnings                      GET     401   403   ok    403   403   victor:ok   -
dashboard/vendor/earnings?vendorId={victor}    GET     401   403   403   403   ok    victor:403  VENDOR_DASHBOARD
dashboard/admin/overview                       GET     401   403   403   403   ok    -           dashboards.view_platform_overview

streams/start                                  POST    401   400   403   400   400   alice:400   -
streams/my-sessions                            GET     401   ok    ok    ok    ok    alice:ok    -
streams/active                                 GET     401   ok    ok    ok    ok    alice:ok    streaming.view_streamingsession
streams/<str:session_id>                       GET     401   404   404   404   ok    alice:ok    streaming.view_streamingsession
streams/<str:session_id>/metrics               PATCH   401   404   404   404   404   alice:ok    -
streams/<str:session_id>/stop                  PATCH   401   404   404   404   ok    alice:ok    streaming.change_streamingsession
streams/<str:session_id>/usage                 POST    401   404   404   404   404   victor:400  -

notifications                                  GET     401   ok    ok    ok    ok    alice:ok    -
notifications                                  POST    401   403   403   403   ok    -           notifications.add_notification
notifications/read-all                         POST    401   ok    ok    ok    ok    alice:ok    -
notifications/preferences                      GET     401   ok    ok    ok    ok    alice:ok    -
notifications/preferences                      PATCH   401   ok    ok    ok    ok    alice:ok    -
notifications/<int:notification_id>            PATCH   401   404   404   404   404   alice:ok    -
notifications/<int:notification_id>            DELETE  401   404   404   404   404   alice:ok    -

consultations                                  GET     401   ok    ok    ok    ok    alice:ok    -
consultations                                  POST    401   400   403   400   400   alice:400   -
consultations/vendor/inbox                     GET     401   403   ok    403   403   victor:ok   -
consultations/<int:consultation_id>            GET     401   404   404   404   ok    alice:ok    CONSULTATION
consultations/<int:consultation_id>/calls      GET     401   404   404   404   ok    alice:ok    CONSULTATION
consultations/<int:consultation_id>/message    POST    401   404   404   404   404   alice:ok    -
consultations/<int:consultation_id>/status     PATCH   401   404   404   404   404   alice:ok    -
consultations/<int:consultation_id>/call/start POST    401   404   404   404   404   alice:409   -
consultations/<int:consultation_id>/call/stop  POST    401   404   404   404   404   alice:409   -

service                                        GET     ok    ok    ok    ok    ok    -           -
service?includeInactive=true                   GET     401   403   ok    403   ok    victor:ok   marketplace.view_service
service                                        POST    401   403   400   403   403   victor:400  -
service/categories                             GET     ok    ok    ok    ok    ok    -           -
service/vendor/my-services                     GET     401   403   ok    403   403   victor:ok   -
service/<int:service_id>                       GET     ok    ok    ok    ok    ok    victor:ok   -
service/<int:service_id>                       PUT     401   403   404   403   403   victor:ok   -
service/<int:service_id>                       PATCH   401   403   404   403   403   victor:ok   -
service/<int:service_id>                       DELETE  401   403   404   403   ok    victor:ok   RETIRE_SERVICE
service/<int:service_id>/toggle-status         PATCH   401   403   404   403   ok    victor:ok   marketplace.change_service

profiles/create                                POST    401   ok    403   403   403   alice:409   -
profiles/my-profile                            GET     401   404   403   404   404   alice:ok    -
profiles/update                                PUT     401   404   403   404   404   alice:ok    -
profiles/update                                PATCH   401   404   403   404   404   alice:ok    -
profiles/delete                                DELETE  401   404   403   404   404   alice:ok    -
profiles/all                                   GET     401   403   403   403   ok    -           accounts.view_profile
vendorprofiles/create                          POST    401   403   ok    403   403   victor:409  -
vendorprofiles/my-profile                      GET     401   403   404   403   403   victor:ok   -
vendorprofiles/update                          PUT     401   403   404   403   403   victor:ok   -
vendorprofiles/update                          PATCH   401   403   404   403   403   victor:ok   -
vendorprofiles/delete                          DELETE  401   403   404   403   403   victor:ok   -
vendorprofiles/all                             GET     ok    ok    ok    ok    ok    -           accounts.view_vendorprofile
adminprofiles/create                           POST    401   403   403   ok    ok    olga:409    -
adminprofiles/my-profile                       GET     401   403   403   404   404   olga:ok     -
adminprofiles/update                           PUT     401   403   403   404   404   olga:ok     -
adminprofiles/update                           PATCH   401   403   403   404   404   olga:ok     -
adminprofiles/delete                           DELETE  401   403   403   404   404   olga:ok     -
adminprofiles/all                              GET     401   403   403   403   ok    -           accounts.view_adminprofile
profile                                        GET     401   ok    ok    ok    ok    alice:ok    -
images                                         POST    401   415   415   415   415   alice:415   -
images/<uuid:image_id>                         GET     401   404   404   404   ok    alice:ok    accounts.view_image
images/<uuid:image_id>                         DELETE  401   404   404   404   404   alice:ok    -

schema/                                        GET     ok    ok    ok    ok    ok    -           -
docs/                                          GET     ok    ok    ok    ok    ok    -           -
^api/                                          GET     404   404   404   404   404   -           -
^api/                                          POST    404   404   404   404   404   -           -
^api/                                          PUT     404   404   404   404   404   -           -
^api/                                          PATCH   404   404   404   404   404   -           -
^api/                                          DELETE  404   404   404   404   404   -           -
"""  # noqa: E501 (a table reads best on one line a row)

# Permissions the staff-only reads ask all of (the names of the table's last column).
PERMISSION_SETS = {
    "USER_DASHBOARD": ("streaming.view_streamingsession", "wallets.view_ledgertransaction"),
    "VENDOR_DASHBOARD": (
        "streaming.view_streamingsession",
        "wallets.view_ledgertransaction",
        "marketplace.view_service",
    ),
    "RETIRE_SERVICE": ("marketplace.view_service", "marketplace.delete_service"),  # as the admin's retire
    "CONSULTATION": (
        "consultations.view_consultation",
        "consultations.view_message",
        "consultations.view_consultationcall",
    ),
}

# The smallest bodies that get an allowed caller past the access checks to an answer worth telling
# apart; every other write is sent `{}`.
BODIES = {
    ("streams/<str:session_id>/metrics", "PATCH"): {"bitrate": 1},
    ("notifications", "POST"): {"userId": "{alice}", "title": "Hi", "message": "Hi."},
    ("notifications/preferences", "PATCH"): {"preferences": {"system": {"email": False}}},
    ("notifications/<int:notification_id>", "PATCH"): {"read": True},
    ("consultations/<int:consultation_id>/message", "POST"): {"message": "Hi."},
    ("consultations/<int:consultation_id>/status", "PATCH"): {"status": "cancelled"},
    ("service/<int:service_id>", "PUT"): {
        "name": "Replaced",
        "category": "Time-Based",
        "rate": "1",
        "unit": "per_minute",
    },
    ("service/<int:service_id>", "PATCH"): {"name": "Renamed"},
    ("profiles/update", "PUT"): {"bio": "Hi."},
    ("profiles/update", "PATCH"): {"bio": "Hi."},
    ("vendorprofiles/create", "POST"): {"businessName": "Wanda Ltd"},
    ("vendorprofiles/update", "PUT"): {"bio": "Hi."},
    ("vendorprofiles/update", "PATCH"): {"bio": "Hi."},
    ("adminprofiles/update", "PUT"): {"bio": "Hi."},
    ("adminprofiles/update", "PATCH"): {"bio": "Hi."},
}

# The API's own root, /api/v1/, in the table (a row cannot start with nothing).
INDEX = "/"

# Where a route is not a path with parameters: the path tried for it.
PATHS = {"^api/": "/api/v1/no-such-endpoint", INDEX: "/api/v1/"}

# The WebSocket routes, and the tests that try each with the same callers.
WEBSOCKETS = {
    "ws/notifications/": "notifications/tests/test_websocket.py",
    "ws/streams/<str:session_id>/": "streaming/tests/test_live.py",
    "": "paygo/tests/test_first_screen.py",  # any other path: closed 4404
}

ACTORS = ("anon", "bob", "wanda", "stan", "staff")


@dataclass(frozen=True)
class Row:
    route: str
    query: str
    method: str
    expected: dict[str, str]  # actor -> answer
    owner: str | None
    permissions: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return self.route, self.method

    def __str__(self) -> str:
        return f"{self.method} {self.route}{'?' + self.query if self.query else ''}"


def _rows() -> list[Row]:
    lines = [line.split() for line in MATRIX.strip().splitlines()[1:] if line.strip()]
    rows = []
    for route_and_query, method, *answers, owner, permissions in lines:
        route, _, query = route_and_query.partition("?")
        rows.append(
            Row(
                route=route,
                query=query,
                method=method,
                expected=dict(zip(ACTORS, answers, strict=True)),
                owner=None if owner == "-" else owner,
                permissions=() if permissions == "-" else PERMISSION_SETS.get(permissions, (permissions,)),
            )
        )
    return rows


ROWS = _rows()


def _api_routes() -> set[tuple[str, str]]:
    """(route under api/v1/, METHOD) for every API pattern of the URL map and every method its view has."""

    def walk(patterns, prefix: str = ""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    found = set()
    for route, callback in walk(get_resolver().url_patterns):
        if not route.startswith(("api/", "^api/")):
            continue
        view = getattr(callback, "view_class", None)
        assert view is not None, f"{route}: a view function, whose methods cannot be read; make it a class"
        # HEAD answers as GET and OPTIONS describes the view, for everyone: not rows of their own.
        methods = [name for name in view.http_method_names if name not in ("head", "options") and hasattr(view, name)]
        for method in methods:
            found.add((route.removeprefix("api/v1/") or INDEX, method.upper()))
    return found


def test_every_route_and_method_has_an_entry_and_every_entry_a_route():
    routes, table = _api_routes(), {row.key for row in ROWS}

    assert not routes - table, f"routes missing from MATRIX: {sorted(routes - table)}"
    assert not table - routes, f"MATRIX entries without a route: {sorted(table - routes)}"
    assert all(row.owner is None or ":" in row.owner for row in ROWS)


def test_every_websocket_route_names_its_tests():
    from django.conf import settings

    from paygo.routing import websocket_urlpatterns

    assert {str(pattern.pattern) for pattern in websocket_urlpatterns} == set(WEBSOCKETS)
    for route, tests in WEBSOCKETS.items():
        fixed_part = route.split("<")[0]
        assert f"/{fixed_part}" in (settings.BASE_DIR / tests).read_text(), f"{tests} never opens {route}"


# --- the objects, built once for the module --------------------------------------------------------


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The cast and one object of each kind, in a transaction rolled back after the module."""
    from consultations.services import consultation_create
    from marketplace.models import Category
    from marketplace.services import service_create
    from notifications import notify
    from streaming.services import session_start
    from wallets.ledger import asset_get
    from wallets.services import withdrawal_request
    from wallets.tests.conftest import fund_wallet

    with django_db_blocker.unblock(), transaction.atomic():
        cast = {
            name: user_create(
                email=f"{name}@example.com", password=PASSWORD, name=name.capitalize(), role=role, **extra
            )
            for name, role, extra in [
                ("alice", Role.USER, {}),
                ("bob", Role.USER, {}),
                ("victor", Role.VENDOR, {}),
                ("wanda", Role.VENDOR, {}),
                ("olga", Role.ADMIN, {}),
                ("stan", Role.USER, {"is_staff": True}),
                ("staff", Role.USER, {"is_staff": True}),
            ]
        }
        alice, victor = cast["alice"], cast["victor"]
        fund_wallet(alice, 100_000_000)
        service = service_create(
            vendor=victor,
            name="Matrix",
            category=Category.objects.get(name="Time-Based"),
            rate=1_000_000,
            unit="per_minute",
        )
        session = session_start(user=alice, service=service)
        consultation, _ = consultation_create(
            user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hello."
        )
        withdrawal = withdrawal_request(
            user=alice, asset=asset_get("USDC"), amount=1_000_000, to_address="0x0" + "1" * 63
        )
        image = Image.objects.create(
            owner=alice, file="images/matrix.png", content_type="image/png", width=1, height=1, size=1
        )
        notification = notify(alice, "system", "Hello", "Hello.")
        profile_create(user=alice, kind="user")
        profile_create(user=victor, kind="vendor", business_name="Victor Ltd")
        profile_create(user=cast["olga"], kind="admin")
        yield {
            "cast": cast,
            "tokens": {name: token_pair_for(user).access for name, user in cast.items()},
            "params": {
                "service_id": service.pk,
                "session_id": str(session.session_id),
                "consultation_id": consultation.pk,
                "pk": str(withdrawal.pk),
                "image_id": str(image.pk),
                "notification_id": notification.pk,
                **{name: user.pk for name, user in cast.items()},
            },
        }
        transaction.set_rollback(True)


def _path(row: Row, params: dict) -> str:
    if row.route in PATHS:
        return PATHS[row.route]
    path = row.route
    for name, value in params.items():
        for converter in ("int", "str", "uuid"):
            path = path.replace(f"<{converter}:{name}>", str(value))
    assert "<" not in path, f"no value for a parameter of {row.route}"
    query = row.query.format(**params)
    return f"/api/v1/{path}" + (f"?{query}" if query else "")


def _body(row: Row, params: dict) -> str | None:
    if row.method in ("GET", "DELETE"):
        return None
    body = json.dumps(BODIES.get(row.key, {}))
    for name, value in params.items():
        body = body.replace(f'"{{{name}}}"', json.dumps(value))
    return body


def _answer(status: int) -> str:
    return "ok" if 200 <= status < 300 else str(status)


def _callers(row: Row) -> list[tuple[str, str]]:
    callers = list(row.expected.items())
    if row.owner:
        name, answer = row.owner.split(":")
        callers.append((name, answer))
    return callers


CASES = [pytest.param(row, who, expected, id=f"{row} {who}") for row in ROWS for who, expected in _callers(row)]


@pytest.mark.parametrize(("row", "who", "expected"), CASES)
def test_access(world, db, row, who, expected):
    client = APIClient()
    if who != "anon":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['tokens'][who]}")
    if who == "staff" and row.permissions:
        grant(world["cast"]["staff"], *row.permissions)
    path = _path(row, world["params"])

    response = client.generic(row.method, path, _body(row, world["params"]), content_type="application/json")

    assert _answer(response.status_code) == expected, f"{row} -> {path}: {response.content[:300]!r}"
