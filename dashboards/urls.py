"""Routes of the dashboards API, under /api/v1/dashboard/ (and the wallet page's analytics)."""

from django.urls import path

from dashboards import views

urlpatterns = [
    path("user/overview", views.UserOverviewView.as_view(), name="dashboard-user-overview"),
    path("user/sessions", views.UserSessionsView.as_view(), name="dashboard-user-sessions"),
    path("user/sessions/<str:session_id>", views.UserSessionDetailView.as_view(), name="dashboard-user-session"),
    path("vendor/overview", views.VendorOverviewView.as_view(), name="dashboard-vendor-overview"),
    path("vendor/earnings", views.VendorEarningsView.as_view(), name="dashboard-vendor-earnings"),
    path("admin/overview", views.AdminOverviewView.as_view(), name="dashboard-admin-overview"),
]
