"""The auth API: register, login, refresh, logout, me."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from djangorestframework_camel_case.parser import CamelCaseMultiPartParser
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.serializers import (
    PROFILE_SERIALIZERS,
    AuthResponseSerializer,
    ImageSerializer,
    ImageUploadSerializer,
    LoginSerializer,
    LogoutSerializer,
    RefreshSerializer,
    RegisterSerializer,
    UserSerializer,
    VendorProfileSerializer,
    VendorPublicSerializer,
)
from paygo.api.pagination import Pagination
from paygo.api.permissions import IsStaff, IsUserRole, IsVendor, StaffWithPermission
from paygo.api.ratelimits import by_user, enforce, enforce_login_rate
from paygo.api.schema import AutoSchema, ErrorCode, error_codes, error_responses
from paygo.emails import email_key


def _email_key(group: str, request) -> str:
    # Runs before the serializer: a body that is not an object ([], "x", 123) has no email, and
    # the serializer then refuses it with the 400 every endpoint gives.
    data = getattr(request, "data", None)
    email = data.get("email") if isinstance(data, Mapping) else None
    # Counted per mailbox as accounts compare it: each spelling of one had a budget of its own.
    return email_key(str(email or ""))[:254]


def _auth_response(user, status_code: int) -> Response:
    tokens = services.token_pair_for(user)
    body = {"user": UserSerializer(user).data, "token": tokens.access, "refresh_token": tokens.refresh}
    return Response(body, status=status_code)


# The refusals of accounts' services, as the schema tells them.
EMAIL_TAKEN = ErrorCode(409, "email_taken", "an account with this email exists (`errors.email`).")
PROFILE_EXISTS = ErrorCode(409, "profile_exists", "the caller has a profile of this kind already.")
_SIGN_IN_REFUSED = "The email and password do not sign in."
INVALID_CREDENTIALS = ErrorCode(401, "invalid_credentials", "wrong email or password.")
NO_ACTIVE_ACCOUNT = ErrorCode(401, "no_active_account", "the account is no longer active.")
_REFRESH_TOKEN_REFUSED_LEAD = "The refresh token sent is refused; sign in again."
_REFRESH_TOKEN_REFUSED = (
    ErrorCode(401, "token_expired", "its sign-in's time ran out."),
    ErrorCode(401, "token_invalid", "it is not one of PayGo's refresh tokens (an access token, say)."),
    ErrorCode(401, "token_revoked", "it was used already, or its sign-in has ended (a logout)."),
    ErrorCode(401, "password_changed", "the account's password changed since it was issued."),
    ErrorCode(401, "no_active_account", "its account is no longer active."),
)


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RegisterSerializer,
        responses={201: AuthResponseSerializer, **error_responses(429), **error_codes(EMAIL_TAKEN)},
        summary="Sign up",
    )
    def post(self, request):
        enforce(
            request,
            limits=[
                ("register-ip", "ip", settings.RATELIMIT_REGISTER_PER_IP),
                ("register-email", _email_key, settings.RATELIMIT_REGISTER_PER_EMAIL),
            ],
        )
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return _auth_response(user, status.HTTP_201_CREATED)


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: AuthResponseSerializer,
            **error_responses(429),
            **error_codes(INVALID_CREDENTIALS, NO_ACTIVE_ACCOUNT, lead=_SIGN_IN_REFUSED),
        },
        summary="Log in",
    )
    def post(self, request):
        enforce_login_rate(request)  # failed attempts are counted by authenticate() (django-axes)
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_login(request=request, **data.validated_data)
        return _auth_response(user, status.HTTP_200_OK)


class RefreshView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RefreshSerializer,
        responses={
            200: inline_serializer(
                "RefreshResponse", {"token": serializers.CharField(), "refreshToken": serializers.CharField()}
            ),
            **error_codes(*_REFRESH_TOKEN_REFUSED, lead=_REFRESH_TOKEN_REFUSED_LEAD),
        },
        summary="Exchange a refresh token for new access and refresh tokens (the one sent is used up)",
    )
    def post(self, request):
        data = RefreshSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = services.token_refresh(refresh_token=data.validated_data["refresh_token"])
        return Response({"token": tokens.access, "refresh_token": tokens.refresh})


class LogoutView(APIView):
    # The refresh token in the body is the credential: an access token, expired or not, is not asked
    # for (a client often logs out because its tokens are old) and changes nothing.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=LogoutSerializer,
        responses={
            200: inline_serializer("LogoutResponse", {"message": serializers.CharField()}),
            # with `everywhere`, also: it was used already, its sign-in has ended, or its password changed
            **error_codes(*_REFRESH_TOKEN_REFUSED, lead=_REFRESH_TOKEN_REFUSED_LEAD),
        },
        summary="Log out: end the sign-in of a refresh token, or every sign-in of its user",
        description="The sign-in's tokens, access tokens included, are refused from then on, and the "
        "sockets they opened are closed (4401). Logging out again answers 200.",
    )
    def post(self, request):
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_logout(**data.validated_data)
        everywhere = data.validated_data["everywhere"]
        return Response({"message": "Logged out everywhere." if everywhere else "Logged out."})


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: inline_serializer("Me", {"user": UserSerializer()})}, summary="The caller")
    def get(self, request):
        return Response({"user": UserSerializer(request.user).data})


# --- Profiles and images --------------------------------------------------------------------------


def _profile_kind_permission(kind: str):
    return {"user": IsUserRole, "vendor": IsVendor, "admin": IsStaff}[kind]


def _profile_envelope(serializer_class, *, changed: bool):
    """What the profile views answer: the caller's profile under `profile` (and a `message` when
    it was just changed)."""
    name = serializer_class.__name__.removesuffix("Serializer")
    fields = {"profile": serializer_class()}
    if changed:
        fields = {"message": serializers.CharField(), **fields}
    return inline_serializer(f"{name}{'Changed' if changed else 'Body'}", fields)


_PROFILE_BODIES = {kind: _profile_envelope(s, changed=False) for kind, s in PROFILE_SERIALIZERS.items()}
_PROFILE_CHANGED = {kind: _profile_envelope(s, changed=True) for kind, s in PROFILE_SERIALIZERS.items()}
_PROFILE_DELETED = inline_serializer("ProfileDeleted", {"message": serializers.CharField()})
_VENDOR_DIRECTORY = PolymorphicProxySerializer(
    component_name="VendorDirectoryEntry",
    serializers=[VendorProfileSerializer, VendorPublicSerializer],  # the whole profile for staff who may view it
    resource_type_field_name=None,
    many=True,
)


class ProfileSchema(AutoSchema):
    """The profile views serve three kinds of profile (profiles/, vendorprofiles/, adminprofiles/):
    the schema of each route is its kind's, as the view's `schema_responses` says."""

    def get_request_serializer(self):
        serializer_class = PROFILE_SERIALIZERS[self.view.kind]
        if self.method == "POST":
            return serializer_class
        # An update changes only the fields it is sent, for PUT as for PATCH (ProfileUpdateView).
        return serializer_class(partial=True) if self.method in ("PUT", "PATCH") else None

    def get_response_serializers(self):
        return self.view.schema_responses()


class _ProfileView(APIView):
    """One of the three profile APIs (profiles/, vendorprofiles/, adminprofiles/): `kind` says which."""

    kind = "user"
    schema = ProfileSchema()

    def get_permissions(self):
        return [_profile_kind_permission(self.kind)()]

    def serializer_class(self):
        return PROFILE_SERIALIZERS[self.kind]

    def shape(self, profile) -> dict:
        return self.serializer_class()(profile, context={"request": self.request}).data

    def schema_responses(self) -> dict:
        raise NotImplementedError


class ProfileCreateView(_ProfileView):
    @extend_schema(summary="Create the caller's profile")
    def post(self, request):
        data = self.serializer_class()(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        services.profile_create(user=request.user, kind=self.kind, **data.validated_data)
        profile = selectors.profile_get_own(user=request.user, kind=self.kind)
        return Response({"message": "Profile created.", "profile": self.shape(profile)}, status=status.HTTP_201_CREATED)

    def schema_responses(self) -> dict:
        return {201: _PROFILE_CHANGED[self.kind], **error_codes(PROFILE_EXISTS)}


class ProfileMineView(_ProfileView):
    @extend_schema(summary="The caller's profile")
    def get(self, request):
        return Response({"profile": self.shape(selectors.profile_get_own(user=request.user, kind=self.kind))})

    def schema_responses(self) -> dict:
        return {200: _PROFILE_BODIES[self.kind], **error_responses(404)}  # 404: none made yet


class ProfileUpdateView(_ProfileView):
    def _update(self, request):
        profile = selectors.profile_get_own(user=request.user, kind=self.kind)
        data = self.serializer_class()(profile, data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        services.profile_update(profile=profile, **data.validated_data)
        profile = selectors.profile_get_own(user=request.user, kind=self.kind)
        return Response({"message": "Profile updated.", "profile": self.shape(profile)})

    @extend_schema(summary="Change the caller's profile")
    def patch(self, request):
        return self._update(request)

    @extend_schema(summary="Change the caller's profile")
    def put(self, request):
        return self._update(request)

    def schema_responses(self) -> dict:
        return {200: _PROFILE_CHANGED[self.kind], **error_responses(404)}


class ProfileDeleteView(_ProfileView):
    @extend_schema(summary="Delete the caller's profile")
    def delete(self, request):
        services.profile_delete(profile=selectors.profile_get_own(user=request.user, kind=self.kind))
        return Response({"message": "Profile deleted."})

    def schema_responses(self) -> dict:
        return {200: _PROFILE_DELETED, **error_responses(404)}


class ProfileListView(_ProfileView):
    """Every profile of the kind: staff who may view them only, except the vendor directory, which
    is public and shows everyone else the public fields only."""

    results_key = "profiles"

    def get_permissions(self):
        if self.kind == "vendor":
            return [AllowAny()]
        return [StaffWithPermission(selectors.profile_view_permission(self.kind))]

    @extend_schema(summary="All profiles of this kind")
    def get(self, request):
        if self.kind == "vendor":
            profiles = selectors.vendor_directory(viewer=request.user)
            whole = selectors.sees_whole_vendor_directory(request.user)
            serializer_class = VendorProfileSerializer if whole else VendorPublicSerializer
        else:
            profiles = selectors.profile_list(kind=self.kind)
            serializer_class = self.serializer_class()
        paginator = Pagination()
        page = paginator.paginate_queryset(profiles, request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)

    def schema_responses(self) -> dict:
        return {200: _VENDOR_DIRECTORY if self.kind == "vendor" else self.serializer_class()(many=True)}


class CallerProfileView(APIView):
    """The caller and their profile of whatever kind; the frontend calls it to check its token."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The caller's own profile",
        responses={
            200: inline_serializer(
                "CallerProfile",
                {
                    "user": UserSerializer(),
                    "profileType": serializers.CharField(),
                    "profile": serializers.DictField(allow_null=True),
                },
            )
        },
    )
    def get(self, request):
        kind = services.profile_kind_for(request.user)
        profile = selectors.profile_find_own(user=request.user, kind=kind)
        shaped = PROFILE_SERIALIZERS[kind](profile, context={"request": request}).data if profile else None
        return Response({"user": UserSerializer(request.user).data, "profile_type": kind, "profile": shaped})


class ImageUploadView(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [CamelCaseMultiPartParser]

    @extend_schema(
        summary="Upload a JPEG, PNG, WebP or GIF "
        "(at most 5 MB sent and stored, 8000 pixels a side, 12.6 million in all)",
        request={"multipart/form-data": ImageUploadSerializer},
        responses={
            201: inline_serializer("ImageUploaded", {"message": serializers.CharField(), "image": ImageSerializer()})
        },
    )
    def post(self, request):
        # Each upload is decoded and re-encoded here, up to a second of CPU (accounts.images): a
        # budget of its own, besides the write budget, counted before the picture is read.
        enforce(
            request,
            limits=[
                ("upload-user", by_user, settings.RATELIMIT_UPLOADS_PER_USER),
                ("upload-ip", "ip", settings.RATELIMIT_UPLOADS_PER_IP),
            ],
        )
        upload = request.FILES.get("image") or request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"image": ["Attach the picture as the multipart field 'image'."]})
        image = services.image_upload(owner=request.user, upload=upload)
        return Response(
            {"message": "Image uploaded.", "image": ImageSerializer(image, context={"request": request}).data},
            status=status.HTTP_201_CREATED,
        )


class ImageDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="An image's metadata and URL",
        responses={200: inline_serializer("ImageDetail", {"image": ImageSerializer()})},
    )
    def get(self, request, image_id):
        image = selectors.image_get(viewer=request.user, image_id=image_id)
        return Response({"image": ImageSerializer(image, context={"request": request}).data})

    @extend_schema(
        summary="Delete one of the caller's images",
        responses={200: inline_serializer("ImageDeleted", {"message": serializers.CharField()})},
    )
    def delete(self, request, image_id):
        services.image_delete(image=selectors.image_get_for_owner(user=request.user, image_id=image_id))
        return Response({"message": "Image deleted."})
