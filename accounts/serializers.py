"""Shapes of the accounts API."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import Role, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "name", "email", "role", "wallet_address"]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, trim_whitespace=True)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})
    role = serializers.ChoiceField(choices=Role.choices, default=Role.USER)


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class RefreshSerializer(serializers.Serializer):
    refresh_token = serializers.CharField(required=False)
    # simplejwt's own name, accepted too
    refresh = serializers.CharField(required=False)

    def validate(self, attrs):
        token = attrs.get("refresh_token") or attrs.get("refresh")
        if not token:
            raise serializers.ValidationError({"refresh_token": ["This field is required."]})
        return {"refresh_token": token}


class AuthResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    token = serializers.CharField()
    refresh_token = serializers.CharField()
