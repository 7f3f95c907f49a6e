"""Routes of the notifications API. The fixed paths come before `<id>`."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("notifications", views.NotificationListView.as_view(), name="notification-list"),
    path("notifications/read-all", views.NotificationReadAllView.as_view(), name="notification-read-all"),
    path("notifications/preferences", views.NotificationPreferencesView.as_view(), name="notification-preferences"),
    path("notifications/<int:notification_id>", views.NotificationDetailView.as_view(), name="notification-detail"),
]
