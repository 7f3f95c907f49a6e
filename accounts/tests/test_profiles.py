"""Profiles of users, vendors and staff; the caller's own profile; the public vendor directory."""

from __future__ import annotations

import json

import pytest

from accounts.models import AdminProfile, Image, Profile, VendorProfile
from accounts.services import image_delete, profile_create, profile_delete, profile_update, user_create
from accounts.tests.conftest import picture, while_writing
from conftest import grant, money_db
from paygo.api.errors import Conflict

pytestmark = pytest.mark.django_db

KINDS = {"profiles": Profile, "vendorprofiles": VendorProfile, "adminprofiles": AdminProfile}
OWNER = {"profiles": "alice", "vendorprofiles": "victor", "adminprofiles": "olga"}
KIND_OF = {"profiles": "user", "vendorprofiles": "vendor", "adminprofiles": "admin"}
MINIMAL = {"profiles": {}, "vendorprofiles": {"businessName": "Victor Audio"}, "adminprofiles": {}}


@pytest.fixture
def as_(request, anon, api):
    def client(who: str):
        return anon if who == "anon" else api(request.getfixturevalue(who))

    return client


def make_profile(user, prefix: str, **fields):
    fields = {"business_name": f"{user.name} Ltd"} | fields if prefix == "vendorprofiles" else fields
    return profile_create(user=user, kind=KIND_OF[prefix], **fields)


def row(profile) -> dict:
    profile.refresh_from_db()
    return {f.attname: getattr(profile, f.attname) for f in type(profile)._meta.concrete_fields}


# --- the role matrix ----------------------------------------------------------------------------

ROLES = ["anon", "alice", "victor", "olga"]


def expected_status(prefix: str, who: str, ok: int) -> int:
    if who == "anon":
        return 401
    return ok if who == OWNER[prefix] else 403


@pytest.mark.parametrize("prefix", list(KINDS))
@pytest.mark.parametrize("who", ROLES)
def test_create_matrix(as_, prefix, who):
    response = as_(who).post(f"/api/v1/{prefix}/create", MINIMAL[prefix], format="json")

    status = expected_status(prefix, who, 201)
    assert response.status_code == status
    assert KINDS[prefix].objects.count() == (1 if status == 201 else 0)
    if status == 201:
        assert response.json()["message"] == "Profile created."
        assert response.json()["profile"]["user"]["name"] == who.capitalize()


@pytest.mark.parametrize("prefix", list(KINDS))
@pytest.mark.parametrize("who", ROLES)
def test_my_profile_matrix(request, as_, prefix, who):
    profile = make_profile(request.getfixturevalue(OWNER[prefix]), prefix, bio="Hello.")

    response = as_(who).get(f"/api/v1/{prefix}/my-profile")

    assert response.status_code == expected_status(prefix, who, 200)
    if response.status_code == 200:
        assert response.json()["profile"]["id"] == profile.pk
        assert response.json()["profile"]["bio"] == "Hello."


@pytest.mark.parametrize("prefix", list(KINDS))
@pytest.mark.parametrize("who", ROLES)
def test_update_matrix(request, as_, prefix, who):
    profile = make_profile(request.getfixturevalue(OWNER[prefix]), prefix, bio="Before.")
    before = row(profile)

    response = as_(who).patch(f"/api/v1/{prefix}/update", {"bio": "After."}, format="json")

    assert response.status_code == expected_status(prefix, who, 200)
    if response.status_code == 200:
        assert response.json()["message"] == "Profile updated."
        assert response.json()["profile"]["bio"] == "After."
        assert row(profile)["bio"] == "After."
    else:
        assert row(profile) == before


@pytest.mark.parametrize("prefix", list(KINDS))
@pytest.mark.parametrize("who", ROLES)
def test_delete_matrix(request, as_, prefix, who):
    profile = make_profile(request.getfixturevalue(OWNER[prefix]), prefix)

    response = as_(who).delete(f"/api/v1/{prefix}/delete")

    assert response.status_code == expected_status(prefix, who, 200)
    assert KINDS[prefix].objects.filter(pk=profile.pk).exists() is (response.status_code != 200)


@pytest.mark.parametrize("prefix", ["profiles", "adminprofiles"])
@pytest.mark.parametrize(
    ("who", "status"), [("anon", 401), ("alice", 403), ("victor", 403), ("olga", 200), ("stan", 403)]
)
def test_all_is_staff_only(as_, alice, olga, prefix, who, status):
    make_profile(alice if prefix == "profiles" else olga, prefix)

    response = as_(who).get(f"/api/v1/{prefix}/all")

    assert response.status_code == status
    if status == 200:
        assert response.json()["count"] == 1
        assert len(response.json()["profiles"]) == 1


@pytest.mark.parametrize(
    ("prefix", "permission"), [("profiles", "accounts.view_profile"), ("adminprofiles", "accounts.view_adminprofile")]
)
def test_all_asks_the_view_permission_on_its_profiles(api, alice, olga, stan, prefix, permission):
    make_profile(alice if prefix == "profiles" else olga, prefix)
    other = "accounts.view_adminprofile" if prefix == "profiles" else "accounts.view_profile"

    assert api(grant(stan, other)).get(f"/api/v1/{prefix}/all").status_code == 403
    response = api(grant(stan, permission)).get(f"/api/v1/{prefix}/all")

    assert response.status_code == 200
    assert response.json()["count"] == 1


# --- the outsider: one's own profile only -------------------------------------------------------


def test_the_outsider_reaches_only_his_own_profile(api, alice, bob):
    alices = make_profile(alice, "profiles", bio="Alice's.")
    before = row(alices)
    client = api(bob)

    assert client.get("/api/v1/profiles/my-profile").status_code == 404
    assert client.patch("/api/v1/profiles/update", {"bio": "Bob was here."}, format="json").status_code == 404
    assert client.delete("/api/v1/profiles/delete").status_code == 404
    assert row(alices) == before
    assert Profile.objects.count() == 1


def test_another_vendor_reaches_only_her_own_vendor_profile(api, victor, wanda):
    victors = make_profile(victor, "vendorprofiles")
    before = row(victors)

    assert api(wanda).patch("/api/v1/vendorprofiles/update", {"businessName": "Mine"}, format="json").status_code == 404
    assert api(wanda).delete("/api/v1/vendorprofiles/delete").status_code == 404
    assert row(victors) == before


def test_a_second_profile_is_409(api, alice):
    make_profile(alice, "profiles")

    response = api(alice).post("/api/v1/profiles/create", {}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "profile_exists"
    assert Profile.objects.count() == 1


# --- fields and their validation ----------------------------------------------------------------


def test_user_profile_fields(api, alice, upload):
    avatar = upload(alice, picture()).json()["image"]["id"]

    response = api(alice).post(
        "/api/v1/profiles/create",
        {
            "phone": "+44 (20) 7946-0958",
            "address": "1 Main Street",
            "bio": "Likes maths.",
            "socialLinks": ["https://example.com/alice", "http://blog.example.org"],
            "avatar": avatar,
        },
        format="json",
    )

    assert response.status_code == 201
    profile = response.json()["profile"]
    image = Image.objects.get()
    assert profile == {
        "id": Profile.objects.get().pk,
        "user": {"id": alice.pk, "name": "Alice", "email": "alice@example.com", "role": "user"},
        "phone": "+442079460958",
        "address": "1 Main Street",
        "bio": "Likes maths.",
        "socialLinks": ["https://example.com/alice", "http://blog.example.org"],
        "avatar": {"id": avatar, "url": f"http://testserver/media/{image.file.name}"},
        "createdAt": profile["createdAt"],
        "updatedAt": profile["updatedAt"],
    }


def test_vendor_profile_fields(api, victor):
    response = api(victor).post(
        "/api/v1/vendorprofiles/create",
        {
            "businessName": "Victor Audio",
            "description": "Studio time.",
            "website": "https://victor.example.com",
            "categories": ["time-based", "Creative Services", "Time-Based"],
            "payoutAddress": "0x04a3F1",
            "payoutThreshold": "25.5",
        },
        format="json",
    )

    assert response.status_code == 201
    profile = response.json()["profile"]
    assert profile["businessName"] == "Victor Audio"
    assert profile["categories"] == ["Creative Services", "Time-Based"]
    assert profile["payoutAddress"] == "0x" + "0" * 59 + "4a3f1"  # kept as every address is compared
    assert profile["payoutThreshold"] == "25.500000"
    stored = VendorProfile.objects.get()
    assert stored.payout_threshold == 25_500_000
    assert sorted(stored.categories.values_list("name", flat=True)) == ["Creative Services", "Time-Based"]


def test_vendor_profile_update_replaces_categories_and_clears_threshold(api, victor):
    api(victor).post(
        "/api/v1/vendorprofiles/create",
        {"businessName": "V", "categories": ["Time-Based"], "payoutThreshold": "1"},
        format="json",
    )

    response = api(victor).patch(
        "/api/v1/vendorprofiles/update", {"categories": ["Data & Analytics"], "payoutThreshold": None}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["profile"]["categories"] == ["Data & Analytics"]
    assert response.json()["profile"]["payoutThreshold"] is None
    assert VendorProfile.objects.get().payout_threshold is None


def test_admin_profile_fields(api, olga):
    response = api(olga).post("/api/v1/adminprofiles/create", {"department": "Risk"}, format="json")

    assert response.status_code == 201
    assert response.json()["profile"]["department"] == "Risk"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"phone": "12345"}, "phone", "Enter the number in international E.164 form, e.g. +14155550123."),
        ({"phone": "+0123456"}, "phone", "Enter the number in international E.164 form, e.g. +14155550123."),
        ({"phone": "+1234567890123456"}, "phone", "Enter the number in international E.164 form, e.g. +14155550123."),
        ({"phone": "+1 415 CALL ME"}, "phone", "Enter the number in international E.164 form, e.g. +14155550123."),
        ({"socialLinks": ["javascript:alert(1)"]}, "socialLinks", "Enter a valid http(s) URL."),
        ({"socialLinks": ["JAVASCRIPT://example.com/%0aalert(1)"]}, "socialLinks", "Enter a valid http(s) URL."),
        ({"socialLinks": ["data:text/html,<script>alert(1)</script>"]}, "socialLinks", "Enter a valid http(s) URL."),
        ({"socialLinks": ["ftp://example.com/file"]}, "socialLinks", "Enter a valid http(s) URL."),
        ({"socialLinks": ["not a url"]}, "socialLinks", "Enter a valid http(s) URL."),
        ({"socialLinks": "https://example.com"}, "socialLinks", "Expected a list of items"),
        ({"socialLinks": [f"https://e.com/{n}" for n in range(11)]}, "socialLinks", "no more than 10 elements"),
        ({"bio": "x" * 2001}, "bio", "Ensure this field has no more than 2000 characters."),
        ({"address": "x" * 301}, "address", "Ensure this field has no more than 300 characters."),
        ({"avatar": "not-a-uuid"}, "avatar", "Give the id of an uploaded image."),
        ({"avatar": "00000000-0000-0000-0000-000000000000"}, "avatar", "Unknown image."),
    ],
)
def test_user_profile_validation(api, alice, payload, field, message):
    response = api(alice).post("/api/v1/profiles/create", payload, format="json")

    assert response.status_code == 400
    assert message in json.dumps(response.json()["errors"][field])
    assert Profile.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "businessName"),
        ({"businessName": ""}, "businessName"),
        ({"businessName": "x" * 121}, "businessName"),
        ({"businessName": "\u202eoiduA rotciV"}, "businessName"),  # a text-direction override
        ({"businessName": "\u200b"}, "businessName"),  # shows nothing
        ({"website": "javascript:alert(1)"}, "website"),
        ({"website": "ftp://files.example.com"}, "website"),
        ({"categories": ["Astrology"]}, "categories"),
        ({"categories": "Time-Based"}, "categories"),
        ({"payoutAddress": "0x"}, "payoutAddress"),
        ({"payoutAddress": "0xZZ"}, "payoutAddress"),
        ({"payoutAddress": "04a3f1"}, "payoutAddress"),
        ({"payoutAddress": "0x" + "a" * 65}, "payoutAddress"),
        ({"payoutThreshold": "0"}, "payoutThreshold"),
        ({"payoutThreshold": "-5"}, "payoutThreshold"),
        ({"payoutThreshold": "NaN"}, "payoutThreshold"),
        ({"payoutThreshold": "1.0000001"}, "payoutThreshold"),
    ],
)
def test_vendor_profile_validation(api, victor, payload, field):
    body = {"businessName": "Victor Audio"} | payload if field != "businessName" else payload

    response = api(victor).post("/api/v1/vendorprofiles/create", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert VendorProfile.objects.count() == 0


def test_someone_elses_image_cannot_be_an_avatar(api, alice, bob, upload):
    bobs_image = upload(bob, picture()).json()["image"]["id"]

    response = api(alice).post("/api/v1/profiles/create", {"avatar": bobs_image}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"avatar": ["Unknown image."]}
    assert Profile.objects.count() == 0


def test_update_refuses_bad_input_and_changes_nothing(api, alice):
    profile = make_profile(alice, "profiles", phone="+14155550123")
    before = row(profile)

    response = api(alice).patch(
        "/api/v1/profiles/update", {"phone": "555", "socialLinks": ["javascript:x"]}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"phone", "socialLinks"}
    assert row(profile) == before


def test_deleting_the_avatar_image_clears_it(api, alice, upload):
    image_id = upload(alice, picture()).json()["image"]["id"]
    api(alice).post("/api/v1/profiles/create", {"avatar": image_id}, format="json")

    api(alice).delete(f"/api/v1/images/{image_id}")

    assert api(alice).get("/api/v1/profiles/my-profile").json()["profile"]["avatar"] is None


# --- races: a profile or its avatar deleted while a request changes it ---------------------------


@money_db
def test_an_update_racing_the_profiles_deletion_is_a_404(api, alice):
    """The update read the profile before the deletion committed, then saved it: no row to save (a
    DatabaseError, a 500). It now locks the row it changes, waits for the deletion, and finds none."""
    profile = make_profile(alice, "profiles", bio="old")

    answer = while_writing(
        lambda: profile_delete(profile=Profile.objects.get(pk=profile.pk)),
        lambda: api(alice).patch("/api/v1/profiles/update", {"bio": "new"}, format="json"),
    )

    assert answer.status_code == 404, answer.json()
    assert answer.json() == {"message": "You have no profile yet.", "statusCode": 404, "code": "not_found"}
    assert not Profile.objects.exists()


@money_db
def test_an_avatar_chosen_while_its_image_is_being_deleted_is_refused(api, alice, upload):
    """The image was there when the request read it, its deletion not yet committed: the profile
    pointed at a row that was gone when it committed (a foreign key violation, a 500)."""
    profile = make_profile(alice, "profiles", bio="old")
    image = Image.objects.get(pk=upload(alice, picture()).json()["image"]["id"])

    answer = while_writing(
        lambda: image_delete(image=Image.objects.get(pk=image.pk)),
        lambda: api(alice).patch("/api/v1/profiles/update", {"avatar": str(image.pk), "bio": "new"}, format="json"),
    )

    assert answer.status_code == 400, answer.json()
    assert answer.json()["errors"] == {"avatar": ["Unknown image."]}
    assert (row(profile)["avatar_id"], row(profile)["bio"]) == (None, "old")
    assert not Image.objects.exists()


@money_db
def test_an_avatar_chosen_for_a_new_profile_while_its_image_is_being_deleted_is_refused(api, alice, upload):
    image = Image.objects.get(pk=upload(alice, picture()).json()["image"]["id"])

    answer = while_writing(
        lambda: image_delete(image=Image.objects.get(pk=image.pk)),
        lambda: api(alice).post("/api/v1/profiles/create", {"avatar": str(image.pk)}, format="json"),
    )

    assert answer.status_code == 400, answer.json()
    assert answer.json()["errors"] == {"avatar": ["Unknown image."]}
    assert not Profile.objects.exists()


@money_db
def test_an_image_deleted_while_it_is_being_made_an_avatar_leaves_the_profile_without_it(api, alice, upload):
    """The deletion cleared the image from the profiles that showed it when it looked, not from one
    that was being given it: the profile then pointed at a deleted image (a foreign key violation on
    the deletion, a 500). The deletion now waits for the image's row and clears it from that one too."""
    profile = make_profile(alice, "profiles")
    image = Image.objects.get(pk=upload(alice, picture()).json()["image"]["id"])

    answer = while_writing(
        lambda: profile_update(profile=Profile.objects.get(pk=profile.pk), avatar=image),
        lambda: api(alice).delete(f"/api/v1/images/{image.pk}"),
    )

    assert answer.status_code == 200, answer.json()
    assert not Image.objects.exists()
    assert row(profile)["avatar_id"] is None


# --- GET /profile -------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "kind"), [("alice", "user"), ("victor", "vendor"), ("olga", "admin")])
def test_profile_answers_the_caller_and_their_profile(request, api, who, kind):
    user = request.getfixturevalue(who)
    client = api(user)

    without = client.get("/api/v1/profile")
    prefix = {"user": "profiles", "vendor": "vendorprofiles", "admin": "adminprofiles"}[kind]
    profile = make_profile(user, prefix)
    with_profile = client.get("/api/v1/profile")

    assert without.status_code == 200
    assert without.json() == {
        "user": {"id": user.pk, "name": user.name, "email": user.email, "role": user.role, "walletAddress": ""},
        "profileType": kind,
        "profile": None,
    }
    assert with_profile.json()["profile"]["id"] == profile.pk
    assert with_profile.json()["profileType"] == kind


def test_a_vendor_given_the_staff_flag_keeps_his_vendor_profile(api, victor):
    """A partner who helps support gets the staff flag: his kind of profile stays a vendor's (it was
    an admin's, and creating his vendor profile said "Only vendors can have this kind of profile")."""
    victor.is_staff = True
    victor.save(update_fields=["is_staff"])
    client = api(victor)

    created = client.post("/api/v1/vendorprofiles/create", {"businessName": "Victor's"}, format="json")

    assert created.status_code == 201, created.json()
    assert client.get("/api/v1/profile").json()["profileType"] == "vendor"
    assert client.post("/api/v1/adminprofiles/create", {}, format="json").status_code == 403


def test_profile_needs_a_valid_token(anon):
    assert anon.get("/api/v1/profile").status_code == 401
    anon.credentials(HTTP_AUTHORIZATION="Bearer expired.or.forged")
    assert anon.get("/api/v1/profile").status_code == 401


# --- the vendor directory -----------------------------------------------------------------------

PUBLIC_FIELDS = {"id", "vendor", "businessName", "description", "website", "categories", "avatar"}


@pytest.mark.parametrize("who", ["anon", "alice", "victor", "wanda", "stan"])
def test_the_vendor_directory_shows_public_fields_to_everyone_but_staff(as_, victor, who):
    make_profile(
        victor,
        "vendorprofiles",
        phone="+14155550123",
        address="Secret street",
        payout_address="0xabc",
        payout_threshold=5_000_000,
    )

    response = as_(who).get("/api/v1/vendorprofiles/all")

    assert response.status_code == 200
    [entry] = response.json()["profiles"]
    assert set(entry) == PUBLIC_FIELDS
    assert entry["vendor"] == {"id": victor.pk, "name": "Victor"}
    text = json.dumps(response.json())
    for private in ("victor@example.com", "+14155550123", "Secret street", "0xabc"):
        assert private not in text


@pytest.mark.parametrize("who", ["olga", "stan"])
def test_staff_who_may_view_vendor_profiles_see_every_field_and_inactive_vendors(request, api, victor, wanda, who):
    make_profile(victor, "vendorprofiles", payout_address="0xabc")
    make_profile(wanda, "vendorprofiles")
    wanda.is_active = False
    wanda.save(update_fields=["is_active"])
    staff = request.getfixturevalue(who)
    staff = grant(staff, "accounts.view_vendorprofile") if who == "stan" else staff

    staff_view = api(staff).get("/api/v1/vendorprofiles/all").json()
    public_view = api(victor).get("/api/v1/vendorprofiles/all").json()

    assert staff_view["count"] == 2
    assert {p["payoutAddress"] for p in staff_view["profiles"]} == {"0xabc", ""}
    assert public_view["count"] == 1


@pytest.mark.parametrize("how_many", [1, 30])
def test_directory_and_all_queries_are_constant(anon, api, olga, django_assert_num_queries, how_many):
    for n in range(how_many):
        vendor = user_create(email=f"v{n}@example.com", password=None, name=f"V{n}", role="vendor")
        make_profile(vendor, "vendorprofiles", categories=[])
        VendorProfile.objects.get(user=vendor).categories.set([1, 2])
        user = user_create(email=f"u{n}@example.com", password=None, name=f"U{n}")
        make_profile(user, "profiles")
    staff = api(olga)

    # count + page + the categories of the page
    with django_assert_num_queries(3):
        assert len(anon.get("/api/v1/vendorprofiles/all?pageSize=100").json()["profiles"]) == how_many
    # + the caller
    with django_assert_num_queries(4):
        assert len(staff.get("/api/v1/vendorprofiles/all?pageSize=100").json()["profiles"]) == how_many
    with django_assert_num_queries(3):
        assert len(staff.get("/api/v1/profiles/all?pageSize=100").json()["profiles"]) == how_many


def test_lists_are_paginated_newest_first(api, olga):
    for n in range(3):
        make_profile(user_create(email=f"u{n}@example.com", password=None, name=f"U{n}"), "profiles")

    body = api(olga).get("/api/v1/profiles/all?pageSize=2").json()

    assert (body["count"], body["totalPages"]) == (3, 2)
    assert [p["user"]["name"] for p in body["profiles"]] == ["U2", "U1"]


def test_the_one_to_one_backs_up_the_exists_check(alice, monkeypatch):
    make_profile(alice, "profiles")
    # As if a concurrent request had created it between the check and the insert.
    monkeypatch.setattr(Profile.objects, "filter", lambda **kw: Profile.objects.none())

    with pytest.raises(Conflict):
        profile_create(user=alice, kind="user")
    assert Profile.objects.count() == 1


def test_a_payout_address_that_is_a_paygo_wallets_is_400(api, alice, victor):
    """Payouts are withdrawals, and none goes to a PayGo wallet (wallets.services.refuse_paygo_address):
    set here, every payout was refused later, out of the vendor's sight."""
    from wallets.services import wallet_open

    response = api(victor).post(
        "/api/v1/vendorprofiles/create",
        {"businessName": "Victor Audio", "payoutAddress": wallet_open(user=alice)},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"]["payoutAddress"][0].startswith("This address is a PayGo wallet's")
    assert VendorProfile.objects.count() == 0
