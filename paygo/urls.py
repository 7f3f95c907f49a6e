"""URL routing: the landing page, the live-cost page, the admin, the API under /api/v1/, its schema and docs."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path, re_path
from django.utils.functional import lazy

from dashboards.admin import operator_dashboard, site_header
from dashboards.pages import home
from dashboards.views import WalletAnalyticsView
from paygo.api.ratelimits import admin_login_throttled
from paygo.api.views import ApiIndexView, ApiNotFoundView, DocsView, HealthView, SchemaView
from paygo.views import favicon
from streaming.pages import live

api_v1 = [
    path("", ApiIndexView.as_view(), name="api-index"),
    path("health", HealthView.as_view(), name="health"),
    path("auth/", include("accounts.urls")),
    # The wallet page's analytics are a dashboard: they read streaming as well as the ledger.
    path("wallet/analytics", WalletAnalyticsView.as_view(), name="wallet-analytics"),
    path("wallet/", include("wallets.urls")),
    path("dashboard/", include("dashboards.urls")),
    path("streams/", include("streaming.urls")),
    path("", include("notifications.urls")),
    path("", include("consultations.urls")),  # consultations, consultations/vendor/inbox, consultations/<id>/...
    path("", include("marketplace.urls")),  # service, service/<id>, service/vendor/my-services
    path("", include("accounts.profile_urls")),  # profile, profiles/, vendorprofiles/, adminprofiles/, images
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("", home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("live/", live, name="live"),
    path("live/<uuid:session_id>/", live, name="live-session"),
    path("admin/dashboard/", admin.site.admin_view(operator_dashboard), name="admin-dashboard"),
    path("admin/login/", admin_login_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/", ApiNotFoundView.as_view()),
    # Uploaded images in development; in production the web server or object storage serves MEDIA_URL.
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]

handler500 = "paygo.views.server_error"  # a 503 to retry when the connection pool stays exhausted

admin.site.site_header = lazy(site_header, str)()  # read on every page: names the Chipi sandbox
admin.site.site_title = "PayGo admin"
admin.site.index_title = "Operate the platform"
