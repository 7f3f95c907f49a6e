"""The operators' admin for categories and services."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.tests.conftest import while_writing
from conftest import admin_form, another_operator, grant, money_db
from marketplace import services
from marketplace.models import Category, Service

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(olga) -> Client:
    olga.is_superuser = True
    olga.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(olga)
    return client


def test_service_changelist_with_filters_and_search(operator, victor, wanda, make_service):
    make_service(victor, name="Victor's studio", rate=2_500_000)
    make_service(wanda, name="Wanda's feed", token="ETH", rate=10**15)

    page = operator.get("/admin/marketplace/service/")
    searched = operator.get("/admin/marketplace/service/?q=studio")
    filtered = operator.get("/admin/marketplace/service/?token__exact=ETH&is_active__exact=1&deleted=no")

    assert page.status_code == 200
    assert b"2.500000 USDC" in page.content and b"0.001000000000000000 ETH" in page.content
    assert b"Victor&#x27;s studio" in searched.content and b"Wanda" not in searched.content
    assert b"Wanda&#x27;s feed" in filtered.content and b"Victor&#x27;s studio" not in filtered.content


def test_the_service_list_reads_as_many_queries_for_six_services_as_for_one(operator, victor, make_service):
    """A subcategory is named with its parent: each row's, and each filter choice's, read its own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get("/admin/marketplace/service/").status_code == 200
        return len(captured)

    make_service(victor, subcategory="Pay Per Hour")
    one = queries()
    for _ in range(5):
        make_service(victor, subcategory="Pay Per Hour")

    assert queries() == one
    assert one < 20


def test_service_change_page_is_read_only(operator, victor, make_service):
    service = make_service(victor, name="Victor's studio")

    page = operator.get(f"/admin/marketplace/service/{service.pk}/change/")

    assert page.status_code == 200
    assert b'name="name"' not in page.content  # no editable input
    assert operator.get("/admin/marketplace/service/add/").status_code == 403
    # Nothing to post back either: an operator's save can never put back a rate its vendor changed.
    posted = operator.post(f"/admin/marketplace/service/{service.pk}/change/", {"description": "Edited", "rate": "1"})
    assert posted.status_code == 403
    assert Service.objects.filter(pk=service.pk, rate=service.rate, description=service.description).exists()


def _act(operator, action: str, services) -> None:
    response = operator.post(
        "/admin/marketplace/service/",
        {"action": action, "_selected_action": [s.pk for s in services]},
    )
    assert response.status_code == 302


def test_deactivate_and_activate_actions(operator, victor, make_service):
    first, second = make_service(victor, name="One"), make_service(victor, name="Two")

    _act(operator, "deactivate", [first, second])
    assert list(Service.objects.values_list("is_active", flat=True)) == [False, False]

    _act(operator, "activate", [first])
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_active, second.is_active) == (True, False)


def test_retire_action_soft_deletes_and_activate_leaves_retired_alone(operator, victor, make_service):
    service = make_service(victor, name="One")

    _act(operator, "retire", [service])
    _act(operator, "activate", [service])

    service.refresh_from_db()
    assert service.deleted_at is not None
    assert service.is_active is False
    assert Service.objects.count() == 1


def test_services_are_never_hard_deleted_from_the_admin(operator, victor, make_service):
    service = make_service(victor)

    assert operator.get(f"/admin/marketplace/service/{service.pk}/delete/").status_code == 403
    assert Service.objects.filter(pk=service.pk).exists()


def test_category_admin_lists_and_adds_a_subcategory(operator):
    page = operator.get("/admin/marketplace/category/?level=subcategory")
    parent = Category.objects.get(name="Data & Analytics")

    response = operator.post(
        "/admin/marketplace/category/add/",
        {
            "name": "Dashboards",
            "parent": parent.pk,
            "children-TOTAL_FORMS": "0",
            "children-INITIAL_FORMS": "0",
            "children-MIN_NUM_FORMS": "0",
            "children-MAX_NUM_FORMS": "1000",
        },
    )

    assert page.status_code == 200
    assert b"Pay Per Hour" in page.content
    assert response.status_code == 302
    assert Category.objects.get(name="Dashboards").parent == parent


def test_category_admin_refuses_a_third_level(operator):
    sub = Category.objects.get(name="Pay Per Hour")

    response = operator.post(
        "/admin/marketplace/category/add/",
        {
            "name": "Too deep",
            "parent": sub.pk,
            "children-TOTAL_FORMS": "0",
            "children-INITIAL_FORMS": "0",
            "children-MIN_NUM_FORMS": "0",
            "children-MAX_NUM_FORMS": "1000",
        },
    )

    assert response.status_code == 200  # the form again, with its error
    assert not Category.objects.filter(name="Too deep").exists()


def _staff_client(user, *permissions: str) -> Client:
    client = Client()
    client.force_login(grant(user, *permissions))
    return client


def test_viewing_services_allows_no_action(stan, victor, make_service):
    service = make_service(victor, name="One")
    viewer = _staff_client(stan, "marketplace.view_service")

    for action in ("deactivate", "retire"):
        # No action is offered to a viewer: the changelist is shown again, nothing is done.
        response = viewer.post("/admin/marketplace/service/", {"action": action, "_selected_action": [service.pk]})
        assert response.status_code == 200

    service.refresh_from_db()
    assert (service.is_active, service.deleted_at) == (True, None)


def test_activating_asks_the_change_permission_and_retiring_the_delete_one(stan, victor, make_service):
    """As the API asks for PATCH /service/<id> and toggle-status, and for DELETE."""
    service = make_service(victor, name="One")
    changer = _staff_client(stan, "marketplace.change_service")

    _act(changer, "retire", [service])
    _act(changer, "deactivate", [service])

    service.refresh_from_db()
    assert (service.is_active, service.deleted_at) == (False, None)

    stan.user_permissions.clear()
    retirer = _staff_client(stan, "marketplace.view_service", "marketplace.delete_service")
    _act(retirer, "activate", [service])
    _act(retirer, "retire", [service])

    service.refresh_from_db()
    assert service.is_active is False
    assert service.deleted_at is not None


def test_the_admins_retire_asks_what_the_apis_delete_asks(stan):
    """The API's DELETE asks view_service and delete_service (selectors.RETIRE_SERVICE); the
    action asked delete_service alone. (Without view or change, the list itself is refused, so
    this is checked on the action's permission.)"""
    from django.contrib import admin
    from django.test import RequestFactory

    from marketplace.models import Service as ServiceModel

    service_admin = admin.site._registry[ServiceModel]
    request = RequestFactory().post("/admin/marketplace/service/")

    def may_retire(*permissions: str) -> bool:
        stan.user_permissions.clear()
        request.user = grant(stan, *permissions)
        return service_admin.has_retire_permission(request)

    assert not may_retire("marketplace.delete_service")
    assert may_retire("marketplace.view_service", "marketplace.delete_service")
    assert may_retire("marketplace.change_service", "marketplace.delete_service")  # change lets one view


@money_db
@pytest.mark.parametrize("action", ["activate", "retire"])
def test_an_action_racing_a_retirement_skips_the_retired_service_and_says_so(olga, victor, make_service, action):
    """The action read the services, the vendor's DELETE committed, and the action's write made an
    active retired service (activate: the database refused it) or retired it again (NotFound): a 500
    page, and the services before it in the selection changed with no word. The retired one is now
    skipped and named, the others are changed and counted."""
    first = services.service_set_active(service=make_service(victor, name="First"), is_active=False)
    retired = services.service_set_active(service=make_service(victor, name="Studio"), is_active=False)
    admin = Client(raise_request_exception=False)
    admin.force_login(olga)

    answer = while_writing(
        lambda: services.service_delete(service=Service.objects.get(pk=retired.pk), by=victor),
        lambda: admin.post(
            "/admin/marketplace/service/", {"action": action, "_selected_action": [first.pk, retired.pk]}
        ),
    )

    assert answer.status_code == 302
    said = [str(message) for message in get_messages(answer.wsgi_request)]
    verb = {"activate": "activated", "retire": "retired"}[action]
    assert said == [f"1 service(s) {verb}.", f"Skipped, retired meanwhile: Studio (#{retired.pk})."]
    first.refresh_from_db()
    retired.refresh_from_db()
    assert (first.is_active, first.deleted_at is not None) == {"activate": (True, False), "retire": (False, True)}[
        action
    ]
    assert (retired.is_active, retired.deleted_at is not None) == (False, True)


def test_renaming_a_subcategory_keeps_the_category_it_was_moved_to_meanwhile(operator):
    """Olga opens "Pay Per Hour" to rename it; another operator moves it to another category: Olga's
    save put it back under the category she had seen."""
    sub, elsewhere = Category.objects.get(name="Pay Per Hour"), Category.objects.get(name="Data & Analytics")
    url = f"/admin/marketplace/category/{sub.pk}/change/"
    seen = admin_form(operator, url)
    other = another_operator()
    assert other.post(url, {**admin_form(other, url), "parent": elsewhere.pk}).status_code == 302

    response = operator.post(url, {**seen, "name": "Hourly"})

    assert response.status_code == 302, response.content[:3000]
    sub.refresh_from_db()
    assert (sub.name, sub.parent) == ("Hourly", elsewhere)


def test_renaming_a_category_keeps_a_subcategory_renamed_meanwhile(operator):
    """The category's page lists its subcategories, each editable: saving the category posted the
    names it had shown, and a subcategory renamed since on its own page got its old name back."""
    parent, sub = Category.objects.get(name="Time-Based"), Category.objects.get(name="Pay Per Hour")
    url = f"/admin/marketplace/category/{parent.pk}/change/"
    seen = admin_form(operator, url)
    other = another_operator()
    sub_url = f"/admin/marketplace/category/{sub.pk}/change/"
    assert other.post(sub_url, {**admin_form(other, sub_url), "name": "Hourly"}).status_code == 302

    response = operator.post(url, {**seen, "name": "Time based"})

    assert response.status_code == 302, response.content[:3000]
    parent.refresh_from_db()
    sub.refresh_from_db()
    assert (parent.name, sub.name, sub.parent) == ("Time based", "Hourly", parent)
