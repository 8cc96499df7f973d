from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from devices import views as device_views
from messaging import views as messaging_views
from messaging.health import healthz
from webhooks import views as webhook_views

urlpatterns = [
    path("events", device_views.EventsView.as_view(), name="events"),
    path("devices/refresh-token", device_views.RefreshTokenView.as_view(), name="refresh-token"),
    path("pushes/opened", messaging_views.PushOpenedView.as_view(), name="pushes-opened"),
    path("developer/push", messaging_views.DeveloperPushView.as_view(), name="developer-push"),
    path("api/v1/messages", messaging_views.MessageListView.as_view(), name="messages"),
    path("api/v1/messages/<int:pk>", messaging_views.MessageDetailView.as_view(), name="message"),
    path("api/v1/messages/<int:pk>/cancel", messaging_views.MessageCancelView.as_view(),
         name="message-cancel"),
    path("api/v1/webhooks", webhook_views.WebhookListView.as_view(), name="webhooks"),
    path("api/v1/webhooks/<int:pk>", webhook_views.WebhookDetailView.as_view(), name="webhook"),
    path("api/v1/webhooks/<int:pk>/rotate-secret", webhook_views.WebhookRotateSecretView.as_view(),
         name="webhook-rotate-secret"),
    path("api/v1/webhooks/<int:pk>/attempts", webhook_views.WebhookAttemptsView.as_view(),
         name="webhook-attempts"),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]

handler404 = "tenants.api.not_found"
handler500 = "tenants.api.server_error"
