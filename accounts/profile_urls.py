"""Routes of profiles (user, vendor, admin), the caller's own profile, and images."""

from django.urls import path

from accounts import views

_ACTIONS = [
    ("create", views.ProfileCreateView),
    ("my-profile", views.ProfileMineView),
    ("update", views.ProfileUpdateView),
    ("delete", views.ProfileDeleteView),
    ("all", views.ProfileListView),
]
_KINDS = [("profiles", "user"), ("vendorprofiles", "vendor"), ("adminprofiles", "admin")]

urlpatterns = [
    path(f"{prefix}/{action}", view.as_view(kind=kind), name=f"{prefix}-{action}")
    for prefix, kind in _KINDS
    for action, view in _ACTIONS
] + [
    path("profile", views.CallerProfileView.as_view(), name="profile"),
    path("images", views.ImageUploadView.as_view(), name="images"),
    path("images/<uuid:image_id>", views.ImageDetailView.as_view(), name="image-detail"),
]
