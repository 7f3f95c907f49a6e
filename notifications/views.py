"""The notifications API: a user's inbox, marking read, deleting, preferences; staff sending."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import selectors, services
from notifications.serializers import (
    NotificationListQuerySerializer,
    NotificationListResponseSerializer,
    NotificationReadAllResponseSerializer,
    NotificationSendResponseSerializer,
    NotificationSendSerializer,
    NotificationSerializer,
    NotificationUpdateSerializer,
    PreferencesResponseSerializer,
    PreferencesUpdateSerializer,
)
from paygo.api.filters import query_filters
from paygo.api.pagination import Pagination
from paygo.api.permissions import StaffWithPermission


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class NotificationListView(GenericAPIView):
    """GET: the caller's notifications. POST (staff): send to one user or to every user of a role."""

    serializer_class = NotificationSerializer
    results_key = "notifications"

    def get_permissions(self):
        if self.request.method == "POST":
            # What the admin's send page asks: being staff is not enough, sending needs its permission.
            return [IsAuthenticated(), StaffWithPermission(services.SEND_PERMISSION)]
        return [IsAuthenticated()]

    @extend_schema(
        summary="The caller's notifications, newest first, with the unread count",
        parameters=[
            OpenApiParameter("read", bool, description="Only read (true) or unread (false) ones."),
            OpenApiParameter("type", str, enum=["session", "payment", "alert", "consultation", "system"]),
            *Pagination.parameters(),
        ],
        responses={200: NotificationListResponseSerializer},
    )
    def get(self, request):
        query = NotificationListQuerySerializer(data=query_filters(request))
        query.is_valid(raise_exception=True)
        notifications = selectors.notification_list_for(request.user, **query.validated_data)
        page = self.paginate_queryset(notifications)
        data = NotificationSerializer(page, many=True).data
        unread = selectors.notification_unread_count_for(request.user)
        return self.paginator.get_paginated_response(data, unread_count=unread.count, unread_count_capped=unread.capped)

    @extend_schema(
        summary="Staff: notify one user (userId) or every active user of a role (role)",
        request=NotificationSendSerializer,
        responses={201: NotificationSendResponseSerializer},
    )
    def post(self, request):
        data = NotificationSendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.notification_send(sent_by=request.user, **data.validated_data)
        return Response(
            {"message": f"Notification sent to {_plural(created, 'user')}.", "created": created},
            status=status.HTTP_201_CREATED,
        )


class NotificationDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Mark one of the caller's notifications read or unread",
        request=NotificationUpdateSerializer,
        responses={200: NotificationSerializer},
    )
    def patch(self, request, notification_id: int):
        notification = selectors.notification_get_for(request.user, notification_id)
        data = NotificationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notification = services.notification_mark_read(notification=notification, read=data.validated_data["read"])
        return Response(NotificationSerializer(notification).data)

    @extend_schema(summary="Delete one of the caller's notifications", responses={204: None})
    def delete(self, request, notification_id: int):
        notification = selectors.notification_get_for(request.user, notification_id)
        services.notification_delete(notification=notification)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationReadAllView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Mark all the caller's notifications read",
        request=None,
        responses={200: NotificationReadAllResponseSerializer},
    )
    def post(self, request):
        updated = services.notification_read_all(user=request.user)
        return Response({"message": f"{_plural(updated, 'notification')} marked as read.", "updated": updated})


def _preferences_body(user, preferences) -> dict:
    return {
        "preferences": {type: {"in_app": True, **asdict(channels)} for type, channels in preferences.items()},
        "verified_phone": bool(user.is_verified and user.phone),
    }


class NotificationPreferencesView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The caller's channels for each notification type", responses={200: PreferencesResponseSerializer}
    )
    def get(self, request):
        return Response(_preferences_body(request.user, selectors.preferences_for(request.user)))

    @extend_schema(
        summary="Change some channels of some types; the others keep their value",
        request=PreferencesUpdateSerializer,
        responses={200: PreferencesResponseSerializer},
    )
    def patch(self, request):
        data = PreferencesUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preferences = services.notification_preferences_update(
            user=request.user, changes=data.validated_data["preferences"]
        )
        return Response(_preferences_body(request.user, preferences))
