"""The notifications API: the inbox, marking read, deleting, read-all; the owner/outsider matrix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import notify
from notifications.models import Notification
from notifications.tests.conftest import fill, rows_read, settle

pytestmark = pytest.mark.django_db

LIST = "/api/v1/notifications"
READ_ALL = "/api/v1/notifications/read-all"


def detail(notification) -> str:
    return f"/api/v1/notifications/{notification.pk}"


def make(user, count: int = 1, *, type: str = "payment", read: bool = False) -> list[Notification]:
    """`count` notifications, one second apart, the last one the newest."""
    start = timezone.now() - timedelta(hours=1)
    made = []
    for index in range(count):
        notification = notify(user, type, f"{type} {index}", f"Message {index}")
        Notification.objects.filter(pk=notification.pk).update(
            created_at=start + timedelta(seconds=index), read=read, read_at=start if read else None
        )
        made.append(notification)
    return made


# --- GET /notifications -------------------------------------------------------------------------------


def test_list_shape(api, alice):
    (notification,) = make(alice)
    notification.refresh_from_db()

    response = api(alice).get(LIST)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "unreadCount": 1,
        "unreadCountCapped": False,
        "notifications": [
            {
                "id": notification.pk,
                "type": "payment",
                "title": "payment 0",
                "message": "Message 0",
                "data": {},
                "read": False,
                "readAt": None,
                "createdAt": notification.created_at.isoformat().replace("+00:00", "Z"),
                "delivery": {"email": "pending", "sms": "not_requested"},
            }
        ],
        "count": 1,
        "page": 1,
        "totalPages": 1,
        "next": None,
        "previous": None,
    }


def test_list_is_the_callers_own_newest_first(api, alice, bob):
    mine = make(alice, 3)
    make(bob, 2)

    body = api(alice).get(LIST).json()

    assert [n["id"] for n in body["notifications"]] == [n.pk for n in reversed(mine)]
    assert body["count"] == 3
    assert body["unreadCount"] == 3


def test_data_keys_come_out_as_written(api, alice, olga):
    """A notification's data is its writer's JSON (the platform writes camelCase keys): renamed on
    the way in and out, a staff member's {"order_ref": 1} came back {"orderRef": 1}, and of two keys
    one snake_case, one camelCase, one was lost."""
    from notifications.models import Notification
    from notifications.serializers import notification_payload

    data = {"order_ref": 1, "orderRef": 2, "OS": "iOS", "nested": {"a_b": [{"c_d": 1}]}}
    sent = api(olga).post(
        LIST, {"userId": alice.pk, "type": "system", "title": "Hi", "message": "Hello", "data": data}, format="json"
    )
    notify(alice, "session", "Started", "Your session started.", {"sessionId": 7, "ratePerMinute": "0.5"})

    listed = {n["title"]: n["data"] for n in api(alice).get(LIST).json()["notifications"]}

    assert sent.status_code == 201, sent.json()
    assert listed == {"Hi": data, "Started": {"sessionId": 7, "ratePerMinute": "0.5"}}
    assert notification_payload(Notification.objects.get(title="Hi"))["data"] == data  # on the socket too


def test_list_needs_a_login(anon):
    response = anon.get(LIST)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(("query", "expected"), [("read=false", 2), ("read=true", 1), ("read=0", 2), ("read=1", 1)])
def test_filter_by_read(api, alice, query, expected):
    make(alice, 2)
    make(alice, 1, read=True)

    body = api(alice).get(f"{LIST}?{query}").json()

    assert body["count"] == expected
    assert {n["read"] for n in body["notifications"]} == {"true" in query or "1" in query}
    assert body["unreadCount"] == 2  # the badge ignores the filters


def test_filter_by_type(api, alice):
    make(alice, 2, type="payment")
    make(alice, 1, type="alert")

    body = api(alice).get(f"{LIST}?type=alert").json()

    assert body["count"] == 1
    assert body["notifications"][0]["type"] == "alert"


def test_filters_combine(api, alice):
    make(alice, 1, type="alert")
    make(alice, 1, type="alert", read=True)
    make(alice, 1, type="payment")

    body = api(alice).get(f"{LIST}?type=alert&read=false").json()

    assert body["count"] == 1


@pytest.mark.parametrize(("query", "field"), [("type=bogus", "type"), ("read=maybe", "read")])
def test_bad_filters_are_a_400(api, alice, query, field):
    response = api(alice).get(f"{LIST}?{query}")

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_pagination(api, alice):
    made = make(alice, 25)

    first = api(alice).get(LIST).json()
    second = api(alice).get(f"{LIST}?page=2").json()
    small = api(alice).get(f"{LIST}?pageSize=10&page=3").json()

    assert (first["count"], first["totalPages"], len(first["notifications"])) == (25, 2, 20)
    assert first["next"].endswith("?page=2")
    assert len(second["notifications"]) == 5
    assert second["notifications"][-1]["id"] == made[0].pk
    assert [n["id"] for n in small["notifications"]] == [n.pk for n in reversed(made[:5])]


@pytest.mark.parametrize("count", [1, 30])
def test_list_query_count_is_constant(api, alice, count, django_assert_num_queries):
    make(alice, count)
    client = api(alice)

    # the caller, the count, the page, the unread count
    with django_assert_num_queries(4):
        response = client.get(LIST)

    assert len(response.json()["notifications"]) == min(count, 20)


def test_deleted_notifications_are_not_listed(api, alice):
    kept, deleted = make(alice, 2)
    api(alice).delete(detail(deleted))

    body = api(alice).get(LIST).json()

    assert [n["id"] for n in body["notifications"]] == [kept.pk]
    assert body["unreadCount"] == 1


# --- PATCH /notifications/:id ---------------------------------------------------------------------------


def test_owner_marks_read_and_unread(api, alice):
    (notification,) = make(alice)

    read = api(alice).patch(detail(notification), {"read": True})

    assert read.status_code == 200
    assert read.json()["read"] is True
    notification.refresh_from_db()
    assert notification.read is True
    first_read_at = notification.read_at
    assert first_read_at is not None
    assert read.json()["readAt"] == first_read_at.isoformat().replace("+00:00", "Z")

    again = api(alice).patch(detail(notification), {"read": True})
    notification.refresh_from_db()
    assert again.status_code == 200
    assert notification.read_at == first_read_at  # the first reading is kept

    unread = api(alice).patch(detail(notification), {"read": False})
    notification.refresh_from_db()
    assert unread.json()["read"] is False
    assert (notification.read, notification.read_at) == (False, None)


def test_outsider_cannot_mark_read(api, alice, bob):
    (notification,) = make(alice)

    response = api(bob).patch(detail(notification), {"read": True})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    notification.refresh_from_db()
    assert notification.read is False


def test_staff_cannot_mark_someone_elses_read(api, alice, olga):
    (notification,) = make(alice)

    assert api(olga).patch(detail(notification), {"read": True}).status_code == 404
    notification.refresh_from_db()
    assert notification.read is False


def test_a_bare_patch_marks_it_read(api, alice):
    """The seed's `PATCH /api/v1/notifications/:id  # Mark as read` takes no body, as its client sends
    it; `read` was required and that PATCH was a 400. Without `read` it marks the notification read."""
    (notification,) = make(alice)

    response = api(alice).patch(detail(notification))  # no body, no Content-Type

    assert response.status_code == 200, response.json()
    assert response.json()["read"] is True
    notification.refresh_from_db()
    assert notification.read is True and notification.read_at is not None


def test_a_patch_without_read_marks_it_read_and_changes_nothing_else(api, alice):
    """This test pinned a 400 (`read` required) for this body. The seed's mark-as-read takes no body,
    so a PATCH without `read` now marks it read; other keys are ignored as they always were (the
    title is the sender's and stays as sent)."""
    (notification,) = make(alice)

    response = api(alice).patch(detail(notification), {"title": "Hacked"}, format="json")

    assert response.status_code == 200
    notification.refresh_from_db()
    assert (notification.read, notification.title) == (True, "payment 0")


@pytest.mark.parametrize("read", [None, "maybe", [True]])
def test_a_read_that_is_not_a_boolean_is_a_400(api, alice, read):
    (notification,) = make(alice)

    response = api(alice).patch(detail(notification), {"read": read}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["read"]
    notification.refresh_from_db()
    assert notification.read is False


def test_patch_unknown_id_is_a_404(api, alice):
    assert api(alice).patch("/api/v1/notifications/999999", {"read": True}).status_code == 404
    assert api(alice).patch("/api/v1/notifications/not-a-number", {"read": True}).status_code == 404


def test_patch_needs_a_login(anon, alice):
    (notification,) = make(alice)

    assert anon.patch(detail(notification), {"read": True}).status_code == 401


# --- DELETE /notifications/:id ---------------------------------------------------------------------------


def test_owner_deletes(api, alice):
    (notification,) = make(alice)

    response = api(alice).delete(detail(notification))

    assert response.status_code == 204
    notification.refresh_from_db()
    assert notification.deleted_at is not None  # kept for operators, gone for the owner
    assert api(alice).delete(detail(notification)).status_code == 404
    assert api(alice).patch(detail(notification), {"read": True}).status_code == 404


def test_outsider_cannot_delete(api, alice, bob):
    (notification,) = make(alice)

    response = api(bob).delete(detail(notification))

    assert response.status_code == 404
    notification.refresh_from_db()
    assert notification.deleted_at is None
    assert api(alice).get(LIST).json()["count"] == 1


def test_staff_cannot_delete_someone_elses(api, alice, olga):
    (notification,) = make(alice)

    assert api(olga).delete(detail(notification)).status_code == 404
    notification.refresh_from_db()
    assert notification.deleted_at is None


def test_delete_needs_a_login(anon, alice):
    (notification,) = make(alice)

    assert anon.delete(detail(notification)).status_code == 401
    notification.refresh_from_db()
    assert notification.deleted_at is None


def test_get_on_one_notification_is_not_allowed(api, alice):
    (notification,) = make(alice)

    assert api(alice).get(detail(notification)).status_code == 405


# The badge is counted up to 999: a vendor with millions unread costs what one with a thousand does.


def _unread_count_query(queries) -> str:
    (sql,) = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and '"read"' in q["sql"]]
    return sql


@pytest.mark.django_db(transaction=True)
def test_the_unread_count_reads_at_most_a_thousand_rows_and_says_it_is_capped(api, alice, bob):
    fill(alice, 6000)
    fill(bob, 3000)
    settle()

    with CaptureQueriesContext(connection) as queries:
        body = api(alice).get(LIST).json()

    assert (body["unreadCount"], body["unreadCountCapped"]) == (999, True)
    read, scans = rows_read(_unread_count_query(queries))
    assert read <= 1000, (read, scans)


@pytest.mark.parametrize(("unread", "shown"), [(0, (0, False)), (999, (999, False)), (1000, (999, True))])
def test_the_unread_count_is_exact_up_to_999(api, alice, unread, shown):
    fill(alice, unread)
    fill(alice, 5, read_at=timezone.now())

    body = api(alice).get(LIST).json()

    assert (body["unreadCount"], body["unreadCountCapped"]) == shown


def test_the_schema_says_the_unread_count_is_capped(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    response = schema["paths"]["/api/v1/notifications"]["get"]["responses"]["200"]["content"]["application/json"]
    ref = response["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = schema["components"]["schemas"][ref]["properties"]

    assert properties["unreadCount"]["maximum"] == 999
    assert "unreadCountCapped" in schema["components"]["schemas"][ref]["required"]
    assert properties["unreadCountCapped"]["type"] == "boolean"


# --- POST /notifications/read-all -----------------------------------------------------------------------


def test_read_all_marks_only_the_callers_unread(api, alice, bob):
    make(alice, 3)
    (already,) = make(alice, 1, read=True)
    make(bob, 2)
    already_read_at = Notification.objects.get(pk=already.pk).read_at

    response = api(alice).post(READ_ALL)

    assert response.status_code == 200
    assert response.json() == {"message": "3 notifications marked as read.", "updated": 3}
    assert not Notification.objects.filter(user=alice, read=False).exists()
    assert Notification.objects.get(pk=already.pk).read_at == already_read_at
    assert Notification.objects.filter(user=bob, read=False).count() == 2
    assert api(alice).get(LIST).json()["unreadCount"] == 0


def test_read_all_with_nothing_unread(api, alice):
    response = api(alice).post(READ_ALL)

    assert response.json() == {"message": "0 notifications marked as read.", "updated": 0}


def test_read_all_leaves_deleted_ones_alone(api, alice):
    (deleted,) = make(alice)
    api(alice).delete(detail(deleted))

    assert api(alice).post(READ_ALL).json()["updated"] == 0
    assert Notification.objects.get(pk=deleted.pk).read is False


@pytest.mark.django_db(transaction=True)
def test_read_all_updates_a_thousand_at_a_time_each_statement_reading_about_that_many(api, alice, bob):
    """A vendor with millions unread: no statement reads or locks them all (one UPDATE over two million
    rows, a sequential scan, ran for three minutes). Each statement is replayed on the inbox as it was."""
    fill(alice, 5500)
    fill(bob, 20000)  # a table where reading it all costs more than a batch by id (a small one is read whole)
    settle()

    with CaptureQueriesContext(connection) as queries:
        response = api(alice).post(READ_ALL)

    assert response.json() == {"message": "5500 notifications marked as read.", "updated": 5500}
    assert not Notification.objects.filter(user=alice, read=False).exists()
    assert Notification.objects.filter(user=bob, read=False).count() == 20000
    statements = [q["sql"] for q in queries.captured_queries if '"notifications_notification"' in q["sql"]]
    assert sum(sql.startswith("UPDATE") for sql in statements) == 6  # five of 1000, one of 500
    Notification.objects.filter(user=alice).update(read=False, read_at=None)  # as it was before
    for sql in statements:
        read, scans = rows_read(sql)
        assert read <= 1000, (read, scans, sql[:300])
    assert Notification.objects.filter(user=alice, read=False).count() == 5500  # the replays were rolled back


def test_read_all_needs_a_login(anon):
    assert anon.post(READ_ALL).status_code == 401


def test_schema_documents_the_endpoints(anon):
    paths = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    assert set(paths["/api/v1/notifications"]) == {"get", "post"}
    assert set(paths["/api/v1/notifications/{notification_id}"]) == {"patch", "delete"}
    assert set(paths["/api/v1/notifications/read-all"]) == {"post"}
    assert set(paths["/api/v1/notifications/preferences"]) == {"get", "patch"}
