"""The auth API: register, login, refresh, me."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.serializers import (
    AuthResponseSerializer,
    LoginSerializer,
    RefreshSerializer,
    RegisterSerializer,
    UserSerializer,
)
from paygo.api.ratelimits import enforce


def _email_key(group: str, request) -> str:
    email = request.data.get("email") if hasattr(request, "data") else None
    return str(email or "").strip().lower()[:254]


def _auth_response(user, status_code: int) -> Response:
    tokens = services.token_pair_for(user)
    body = {"user": UserSerializer(user).data, "token": tokens.access, "refresh_token": tokens.refresh}
    return Response(body, status=status_code)


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RegisterSerializer, responses={201: AuthResponseSerializer}, summary="Sign up")
    def post(self, request):
        enforce(
            request,
            group="register",
            limits=[
                ("ip", settings.RATELIMIT_REGISTER_PER_IP),
                (_email_key, settings.RATELIMIT_REGISTER_PER_EMAIL),
            ],
        )
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return _auth_response(user, status.HTTP_201_CREATED)


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=LoginSerializer, responses={200: AuthResponseSerializer}, summary="Log in")
    def post(self, request):
        enforce(
            request,
            group="login",
            limits=[
                ("ip", settings.RATELIMIT_LOGIN_PER_IP),
                (_email_key, settings.RATELIMIT_LOGIN_PER_EMAIL),
            ],
        )
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
            )
        },
        summary="Exchange a refresh token for a new access token",
    )
    def post(self, request):
        data = RefreshSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = services.token_refresh(refresh_token=data.validated_data["refresh_token"])
        return Response({"token": tokens.access, "refresh_token": tokens.refresh})


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: inline_serializer("Me", {"user": UserSerializer()})}, summary="The caller")
    def get(self, request):
        return Response({"user": UserSerializer(request.user).data})
