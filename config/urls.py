from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api.health import healthz
from audiences import views as audience_views
from devices import views as device_views
from messaging import views as messaging_views

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
    path("api/v1/messages/<int:pk>/cancel", messaging_views.MessageCancelView.as_view(),
         name="message-cancel"),
    path("api/v1/segments", audience_views.SegmentListView.as_view(), name="segments"),
    path("api/v1/segments/count", audience_views.AdHocCountView.as_view(), name="segments-count"),
    path("api/v1/segments/<int:pk>", audience_views.SegmentDetailView.as_view(), name="segment"),
    path("api/v1/segments/<int:pk>/count", audience_views.SegmentCountView.as_view(), name="segment-count"),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]

handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
