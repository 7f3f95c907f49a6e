from django.urls import path

from streaming import views

urlpatterns = [
    path("start", views.StartView.as_view(), name="streams-start"),
    path("my-sessions", views.MySessionsView.as_view(), name="streams-mine"),
    path("active", views.ActiveSessionsView.as_view(), name="streams-active"),
    path("<str:session_id>", views.SessionDetailView.as_view(), name="streams-detail"),
    path("<str:session_id>/metrics", views.MetricsView.as_view(), name="streams-metrics"),
    path("<str:session_id>/stop", views.StopView.as_view(), name="streams-stop"),
    path("<str:session_id>/usage", views.UsageView.as_view(), name="streams-usage"),
]
