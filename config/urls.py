from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api.health import healthz
from api.metrics import metrics_view
from audiences import views as audience_views
from campaigns import views as campaign_views
from devices import views as device_views
from messaging import data_views
from messaging import views as messaging_views
from webhooks import views as webhook_views

# The admin site's frame. Its index is the dashboard (templates/admin/index.html).
admin.site.site_header = "Herald"
admin.site.site_title = "Herald"
admin.site.index_title = "Dashboard"
admin.site.site_url = None  # Herald has no public site to link to

urlpatterns = [
    path("events", device_views.EventsView.as_view(), name="events"),
    path("devices/refresh-token", device_views.RefreshTokenView.as_view(), name="refresh-token"),
    path("pushes/opened", messaging_views.PushOpenedView.as_view(), name="pushes-opened"),
    path("developer/push", messaging_views.DeveloperPushView.as_view(), name="developer-push"),
    path("api/v1/messages", messaging_views.MessageListView.as_view(), name="messages"),
    path("api/v1/messages/<int:pk>", messaging_views.MessageDetailView.as_view(), name="message"),
    path(
        "api/v1/messages/<int:pk>/cancel", messaging_views.MessageCancelView.as_view(), name="message-cancel"
    ),
    path(
        "api/v1/messages/<int:pk>/deliveries.csv",
        data_views.MessageDeliveriesCsvView.as_view(),
        name="message-deliveries-csv",
    ),
    path("api/v1/users.csv", data_views.AppUsersCsvView.as_view(), name="users-csv"),
    # Any characters, line breaks too: an app user id is whatever the app sent.
    re_path(r"^api/v1/users/(?P<app_user_id>[\s\S]+)\Z", data_views.AppUserDataView.as_view(), name="user"),
    path("api/v1/webhooks", webhook_views.WebhookListView.as_view(), name="webhooks"),
    path("api/v1/webhooks/<int:pk>", webhook_views.WebhookDetailView.as_view(), name="webhook"),
    path(
        "api/v1/webhooks/<int:pk>/rotate-secret",
        webhook_views.WebhookRotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "api/v1/webhooks/<int:pk>/attempts",
        webhook_views.WebhookAttemptsView.as_view(),
        name="webhook-attempts",
    ),
    path(
        "api/v1/messages/<int:pk>/winner", messaging_views.MessageWinnerView.as_view(), name="message-winner"
    ),
    path("api/v1/segments", audience_views.SegmentListView.as_view(), name="segments"),
    path("api/v1/segments/count", audience_views.AdHocCountView.as_view(), name="segments-count"),
    path("api/v1/segments/<int:pk>", audience_views.SegmentDetailView.as_view(), name="segment"),
    path("api/v1/segments/<int:pk>/count", audience_views.SegmentCountView.as_view(), name="segment-count"),
    path("api/v1/campaigns", campaign_views.CampaignListView.as_view(), name="campaigns"),
    path("api/v1/campaigns/<int:pk>", campaign_views.CampaignDetailView.as_view(), name="campaign"),
    path(
        "api/v1/campaigns/<int:pk>/activate",
        campaign_views.CampaignActivateView.as_view(),
        name="campaign-activate",
    ),
    path(
        "api/v1/campaigns/<int:pk>/pause", campaign_views.CampaignPauseView.as_view(), name="campaign-pause"
    ),
    path(
        "api/v1/campaigns/<int:pk>/resume",
        campaign_views.CampaignResumeView.as_view(),
        name="campaign-resume",
    ),
    path(
        "api/v1/campaigns/<int:pk>/archive",
        campaign_views.CampaignArchiveView.as_view(),
        name="campaign-archive",
    ),
    path(
        "api/v1/campaigns/<int:pk>/stats", campaign_views.CampaignStatsView.as_view(), name="campaign-stats"
    ),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's page keeps a <style> block inline and draws icons from data: URLs; its
    # script is served as a file (the split view), so scripts stay 'self' only.
    path(
        "api/docs/",
        csp_override({**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]

handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
