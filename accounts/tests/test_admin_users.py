"""Operators create vendors and admins in the admin, search and filter users, deactivate them."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import user_deactivate
from accounts.tests.conftest import while_writing
from conftest import admin_form, another_operator, grant, money_db

pytestmark = pytest.mark.django_db

ADD = "/admin/accounts/user/add/"


def add_user(client, email: str, role: str, name: str = "New One"):
    return client.post(
        ADD,
        {
            "email": email,
            "name": name,
            "role": role,
            "phone": "",
            "password1": "a-Long-pass-4321",
            "password2": "a-Long-pass-4321",
            "usable_password": "true",
        },
    )


@pytest.mark.parametrize(("role", "staff"), [("vendor", False), ("admin", True), ("user", False)])
def test_staff_create_users_of_every_role(client, olga, role, staff):
    client.force_login(olga)

    response = add_user(client, "New.One@Example.com", role)

    assert response.status_code == 302, response.content[:2000]
    user = User.objects.get(email="new.one@example.com")
    assert user.role == role
    assert (user.is_staff, user.is_superuser) == (staff, staff)
    assert user.check_password("a-Long-pass-4321")


def test_the_same_email_in_another_case_is_refused(client, olga, alice):
    client.force_login(olga)

    response = add_user(client, "ALICE@example.com", "vendor")

    assert response.status_code == 200
    assert b"already exists" in response.content
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_an_email_that_its_stored_form_makes_too_long_is_refused(client, olga):
    client.force_login(olga)

    response = add_user(
        client, "a@" + ".".join(["".join(chr(0x4E00 + 37 * i) for i in range(18))] * 6) + ".com", "vendor"
    )

    assert response.status_code == 200  # the form again (was a 500)
    assert b"As it is stored (its domain in ASCII), this email has 257 characters" in response.content
    assert not User.objects.filter(role="vendor").exists()


def test_another_spelling_of_a_taken_mailbox_is_refused(client, olga):
    """Mail to "dora@exämple.com" reaches dora@xn--exmple-cua.com: one mailbox, one account."""
    User.objects.create_user("dora@xn--exmple-cua.com", name="Dora")
    client.force_login(olga)

    response = add_user(client, "Dora@EX\u00c4MPLE.com", "vendor")

    assert response.status_code == 200  # the form again (was a 302: a second account)
    assert b"already exists" in response.content
    assert not User.objects.filter(role="vendor").exists()


def test_an_email_whose_domain_has_no_ascii_form_is_refused(client, olga):
    client.force_login(olga)

    response = add_user(client, "a@\u05e2ex.com", "vendor")

    assert response.status_code == 200
    assert b"not a valid internationalised domain name" in response.content
    assert not User.objects.filter(role="vendor").exists()


@pytest.mark.parametrize("name", ["\u202etroppuS oGyaP", "Victor\u200b", "\u200b"])
def test_a_name_given_in_the_admin_is_visible_text_as_in_the_api(client, olga, name):
    client.force_login(olga)

    response = add_user(client, "new.one@example.com", "vendor", name=name)

    assert response.status_code == 200  # the form again (was a 302: the user was created)
    assert b"Use visible characters only" in response.content
    assert not User.objects.filter(role="vendor").exists()


def test_a_name_given_in_the_admin_is_kept_in_one_form(client, olga):
    client.force_login(olga)

    response = add_user(client, "new.one@example.com", "vendor", name="\uff2eew\nOne")

    assert response.status_code == 302, response.content[:2000]
    assert User.objects.get(role="vendor").name == "New One"


def test_an_email_changed_in_the_admin_is_stored_as_sign_in_looks_it_up(client, olga, alice):
    client.force_login(olga)
    form = _change_form(client, alice)

    response = client.post(f"/admin/accounts/user/{alice.pk}/change/", {**form, "email": " Alice.New@Example.COM "})

    assert response.status_code == 302, response.content[:3000]
    alice.refresh_from_db()
    assert alice.email == "alice.new@example.com"


def test_search_filter_and_deactivate(client, olga, alice, bob, victor):
    client.force_login(olga)

    assert b"victor@example.com" in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"alice@example.com" not in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"bob@example.com" in client.get("/admin/accounts/user/?q=bob").content
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [bob.pk]})

    bob.refresh_from_db()
    alice.refresh_from_db()
    assert (bob.is_active, alice.is_active) == (False, True)


@pytest.mark.parametrize(
    ("permissions", "deactivated"), [(("view_user",), False), (("view_user", "change_user"), True)]
)
def test_deactivating_asks_the_change_permission(client, stan, alice, permissions, deactivated):
    """Staff who may only look at the users' list neither see nor run the deactivate action."""
    client.force_login(grant(stan, *(f"accounts.{permission}" for permission in permissions)))

    page = client.get("/admin/accounts/user/")
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [alice.pk]})

    assert page.status_code == 200
    assert (b"deactivate_users" in page.content) is deactivated
    alice.refresh_from_db()
    assert alice.is_active is not deactivated


def test_users_cannot_reach_the_admin(client, alice):
    client.force_login(alice)

    assert client.get(ADD).status_code == 302


def _change_form(client, user) -> dict:
    """The user's change form as the operator's browser posts it back unchanged."""
    return admin_form(client, f"/admin/accounts/user/{user.pk}/change/")


def test_a_name_changed_in_the_admin_is_visible_text(client, olga, alice):
    client.force_login(olga)

    response = client.post(
        f"/admin/accounts/user/{alice.pk}/change/", {**_change_form(client, alice), "name": "\u202eecilA"}
    )

    assert response.status_code == 200  # the form again
    assert b"Use visible characters only" in response.content
    alice.refresh_from_db()
    assert alice.name == "Alice"


def test_an_admin_given_another_role_is_no_longer_staff_nor_superuser(client, olga):
    """The form shows both boxes ticked: an operator who changed only the role left a superuser."""
    from conftest import _make

    adam = _make("adam", "admin")
    client.force_login(olga)
    data = _change_form(client, adam)
    assert data["is_superuser"] and data["is_staff"]

    response = client.post(f"/admin/accounts/user/{adam.pk}/change/", {**data, "role": "user"})

    assert response.status_code == 302, response.content[:2000]
    adam.refresh_from_db()
    assert (adam.role, adam.is_staff, adam.is_superuser) == ("user", False, False)


def test_staff_who_may_change_users_cannot_grant_themselves_more(client, stan, alice):
    """Making a platform admin (every permission), ticking superuser, or adding permissions and
    groups is a superuser's: staff with accounts.change_user edit the rest of an account."""
    from django.contrib.auth.models import Permission

    stan = grant(stan, "accounts.view_user", "accounts.change_user")
    client.force_login(stan)
    data = _change_form(client, stan)
    everything = list(Permission.objects.values_list("pk", flat=True))

    made_admin = client.post(f"/admin/accounts/user/{stan.pk}/change/", {**data, "role": "admin"})
    ticked = client.post(
        f"/admin/accounts/user/{stan.pk}/change/", {**data, "is_superuser": "on", "user_permissions": everything}
    )
    renamed = client.post(f"/admin/accounts/user/{alice.pk}/change/", {**_change_form(client, alice), "name": "Al"})

    assert made_admin.status_code == 200  # the form again, with the error
    assert "Only a superuser can make someone a platform admin." in made_admin.content.decode()
    assert ticked.status_code == 302
    stan.refresh_from_db()
    assert (stan.role, stan.is_superuser, stan.user_permissions.count()) == ("user", False, 2)
    assert renamed.status_code == 302
    alice.refresh_from_db()
    assert alice.name == "Al"


def test_staff_who_may_change_users_cannot_make_someone_staff(client, stan, alice, bob):
    """The staff box is a superuser's, as the superuser box is: another operator who ticked it made
    a user staff (staff-guarded then: nobody but a superuser could deactivate him again)."""
    stan = grant(stan, "accounts.view_user", "accounts.change_user")
    client.force_login(stan)

    ticked = client.post(f"/admin/accounts/user/{bob.pk}/change/", {**_change_form(client, bob), "is_staff": "on"})
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [bob.pk]})

    assert ticked.status_code == 302
    bob.refresh_from_db()
    assert (bob.is_staff, bob.is_active) == (False, False)  # not staff: deactivated by the operator


def test_a_superuser_makes_someone_staff(client, olga, bob):
    client.force_login(olga)

    ticked = client.post(f"/admin/accounts/user/{bob.pk}/change/", {**_change_form(client, bob), "is_staff": "on"})

    assert ticked.status_code == 302
    bob.refresh_from_db()
    assert bob.is_staff


def test_staff_who_may_add_users_create_vendors_but_not_admins(client, stan):
    client.force_login(grant(stan, "accounts.view_user", "accounts.add_user", "accounts.change_user"))

    vendor = add_user(client, "new.vendor@example.com", "vendor")
    admin_ = add_user(client, "new.admin@example.com", "admin")

    assert vendor.status_code == 302
    assert admin_.status_code == 200
    assert not User.objects.filter(email="new.admin@example.com").exists()
    assert User.objects.get(email="new.vendor@example.com").role == "vendor"


def test_staff_who_may_change_users_cannot_take_over_staff_accounts(client, stan, olga, alice):
    """The password page asks only for the change permission: staff allowed to change users set a
    superuser's password there and could sign in as him. Staff accounts (superusers included) are
    a superuser's to change, delete or deactivate; other accounts, and the operator's own, stay his."""
    from conftest import _make

    stan = grant(stan, "accounts.view_user", "accounts.change_user", "accounts.delete_user")
    colleague = grant(_make("sue", "user", is_staff=True), "accounts.view_user")
    client.force_login(stan)
    new = {"password1": "stan-owns-it-now-42!", "password2": "stan-owns-it-now-42!", "usable_password": "true"}

    for staff in (olga, colleague):
        assert client.post(f"/admin/accounts/user/{staff.pk}/password/", new).status_code == 403
        assert client.get(f"/admin/accounts/user/{staff.pk}/delete/").status_code == 403
        page = client.get(f"/admin/accounts/user/{staff.pk}/change/")
        assert page.status_code == 200 and b'name="_save"' not in page.content  # shown, not editable
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [olga.pk, colleague.pk]})
    assert client.post(f"/admin/accounts/user/{alice.pk}/password/", new).status_code == 302
    assert client.post(f"/admin/accounts/user/{stan.pk}/password/", new).status_code == 302

    for user in (olga, colleague, alice, stan):
        user.refresh_from_db()
    assert not olga.check_password(new["password1"]) and not colleague.check_password(new["password1"])
    assert olga.is_active and colleague.is_active
    assert alice.check_password(new["password1"]) and stan.check_password(new["password1"])


def test_only_a_superuser_changes_groups(client, stan, olga):
    """Groups' permissions are their members': other staff with the group permissions granted
    their own group anything (here, posting money adjustments), and stripped a staff colleague's."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="Support")
    stan.groups.add(group)
    stan = grant(stan, "auth.view_group", "auth.change_group", "auth.add_group", "auth.delete_group")
    adjust = Permission.objects.get(content_type__app_label="wallets", codename="add_ledgertransaction")
    client.force_login(stan)

    changed = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "Support", "permissions": [adjust.pk]})
    deleted = client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    added = client.post("/admin/auth/group/add/", {"name": "Mine", "permissions": [adjust.pk]})

    assert (changed.status_code, deleted.status_code, added.status_code) == (403, 403, 403)
    assert not type(stan).objects.get(pk=stan.pk).has_perm("wallets.add_ledgertransaction")
    assert client.get(f"/admin/auth/group/{group.pk}/change/").status_code == 200  # he may still look
    client.force_login(olga)
    url = f"/admin/auth/group/{group.pk}/change/"
    assert client.post(url, {**admin_form(client, url), "permissions": [adjust.pk]}).status_code == 302


# --- An operator's save writes what he changed, never what he only saw ---------------------------------


@pytest.mark.parametrize("how", ["service", "action", "form"])
def test_saving_a_phone_keeps_a_deactivation_made_since_the_page_was_opened(client, olga, alice, how):
    """Olga opens alice's page to fix her phone; meanwhile alice is deactivated (another operator's
    action or form, or user_deactivate): Olga's save posted the "active" box she saw ticked, and
    alice was active again, her tokens working."""
    client.force_login(olga)
    url = f"/admin/accounts/user/{alice.pk}/change/"
    seen = admin_form(client, url)
    if how == "service":
        user_deactivate(user=User.objects.get(pk=alice.pk))
    elif how == "action":
        another_operator().post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [alice.pk]})
    else:
        other = another_operator()
        theirs = admin_form(other, url)
        del theirs["is_active"]  # unticked
        assert other.post(url, theirs).status_code == 302
    assert not User.objects.get(pk=alice.pk).is_active

    response = client.post(url, {**seen, "phone": "+15550100"})

    assert response.status_code == 302, response.content[:3000]
    alice.refresh_from_db()
    assert (alice.phone, alice.is_active) == ("+15550100", False)


def test_saving_a_name_keeps_what_another_operator_changed_meanwhile(client, olga, alice):
    """Another operator verified alice, made her a vendor and put her in a group while Olga's page
    was open: Olga's rename put back the role, the unticked box and the groups she had seen."""
    from django.contrib.auth.models import Group

    support = Group.objects.create(name="Support")
    client.force_login(olga)
    url = f"/admin/accounts/user/{alice.pk}/change/"
    seen = admin_form(client, url)
    other = another_operator()
    theirs = admin_form(other, url)
    response = other.post(url, {**theirs, "is_verified": "on", "role": "vendor", "groups": [support.pk]})
    assert response.status_code == 302, response.content[:3000]

    response = client.post(url, {**seen, "name": "Alice Liddell"})

    assert response.status_code == 302, response.content[:3000]
    alice.refresh_from_db()
    assert (alice.name, alice.is_verified, alice.role) == ("Alice Liddell", True, "vendor")
    assert list(alice.groups.all()) == [support]


def test_a_field_both_operators_changed_is_refused_not_overwritten(client, olga, alice):
    """Both fixed alice's phone: the second save, made on what its operator saw before the first, is
    refused with the field's error (reload to see the new value) and changes nothing."""
    client.force_login(olga)
    url = f"/admin/accounts/user/{alice.pk}/change/"
    seen = admin_form(client, url)
    other = another_operator()
    other.post(url, {**admin_form(other, url), "phone": "+15550111"})

    response = client.post(url, {**seen, "phone": "+15550100", "name": "Alice Liddell"})

    assert response.status_code == 200  # the form again
    assert "Changed by someone else since you opened this page" in response.content.decode()
    alice.refresh_from_db()
    assert (alice.phone, alice.name) == ("+15550111", "Alice")
    # The same value set by both is no conflict.
    assert client.post(url, {**seen, "phone": "+15550111"}).status_code == 302


@money_db
def test_a_field_both_operators_save_at_once_is_refused_not_overwritten(olga, alice):
    """The other save is still in its transaction when Olga's arrives: hers waits for the user's row
    and compares with what it holds then (unlocked, it read the phone as she had seen it, and
    overwrote the other operator's)."""
    mine, other = Client(), another_operator()
    mine.force_login(olga)
    url = f"/admin/accounts/user/{alice.pk}/change/"
    seen, theirs = admin_form(mine, url), admin_form(other, url)

    answer = while_writing(
        lambda: other.post(url, {**theirs, "phone": "+15550111"}),
        lambda: mine.post(url, {**seen, "phone": "+15550100"}),
    )

    assert answer.status_code == 200  # the form again
    assert "Changed by someone else since you opened this page" in answer.content.decode()
    alice.refresh_from_db()
    assert alice.phone == "+15550111"


def test_a_page_that_does_not_say_what_it_showed_is_refused(client, olga, alice):
    """A form posted without the values its page showed (a page opened before this check existed, a
    script): what the operator saw is unknown, so nothing he did not change can be told apart."""
    client.force_login(olga)
    url = f"/admin/accounts/user/{alice.pk}/change/"
    seen = {name: value for name, value in admin_form(client, url).items() if not name.startswith("initial-")}

    response = client.post(url, {**seen, "phone": "+15550100"})

    assert response.status_code == 200
    assert "reload it" in response.content.decode()
    alice.refresh_from_db()
    assert alice.phone == ""


def test_renaming_a_group_keeps_the_permissions_given_it_meanwhile(client, olga):
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="Support")
    adjust = Permission.objects.get(content_type__app_label="wallets", codename="add_ledgertransaction")
    client.force_login(olga)
    url = f"/admin/auth/group/{group.pk}/change/"
    seen = admin_form(client, url)
    other = another_operator()
    assert other.post(url, {**admin_form(other, url), "permissions": [adjust.pk]}).status_code == 302

    response = client.post(url, {**seen, "name": "Customer support"})

    assert response.status_code == 302, response.content[:3000]
    group.refresh_from_db()
    assert (group.name, list(group.permissions.all())) == ("Customer support", [adjust])


def test_users_are_deactivated_never_deleted_in_the_admin(client, olga, alice):
    """Deleting a user walked every row he owns to say he could not be deleted (his wallet is
    PROTECTed): 356 s for a user with 1.2M notifications. Deactivation is the way (README)."""
    client.force_login(olga)

    page = client.get(f"/admin/accounts/user/{alice.pk}/delete/")
    posted = client.post(f"/admin/accounts/user/{alice.pk}/delete/", {"post": "yes"})
    listed = client.get("/admin/accounts/user/")
    action = client.post("/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [alice.pk]})

    assert (page.status_code, posted.status_code) == (403, 403)
    assert "delete_selected" not in [name for name, _ in listed.context["action_form"].fields["action"].choices]
    assert action.status_code == 302  # "no action selected": the list again
    assert User.objects.filter(pk=alice.pk, is_active=True).exists()
