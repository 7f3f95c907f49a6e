"""Routes of the consultations API. The vendor inbox comes before `<id>`."""

from django.urls import path

from consultations import views

urlpatterns = [
    path("consultations", views.ConsultationListView.as_view(), name="consultation-list"),
    path("consultations/vendor/inbox", views.VendorInboxView.as_view(), name="consultation-vendor-inbox"),
    path("consultations/<int:consultation_id>", views.ConsultationDetailView.as_view(), name="consultation-detail"),
    path("consultations/<int:consultation_id>/calls", views.CallListView.as_view(), name="consultation-calls"),
    path("consultations/<int:consultation_id>/message", views.MessageView.as_view(), name="consultation-message"),
    path("consultations/<int:consultation_id>/status", views.StatusView.as_view(), name="consultation-status"),
    path(
        "consultations/<int:consultation_id>/call/start", views.CallStartView.as_view(), name="consultation-call-start"
    ),
    path("consultations/<int:consultation_id>/call/stop", views.CallStopView.as_view(), name="consultation-call-stop"),
]
