from django.urls import path

from marketplace import views

urlpatterns = [
    path("service", views.ServiceListCreateView.as_view(), name="service-list"),
    path("service/categories", views.CategoryListView.as_view(), name="service-categories"),
    path("service/vendor/my-services", views.MyServicesView.as_view(), name="service-my-services"),
    path("service/<int:service_id>", views.ServiceDetailView.as_view(), name="service-detail"),
    path(
        "service/<int:service_id>/toggle-status", views.ServiceToggleStatusView.as_view(), name="service-toggle-status"
    ),
]
