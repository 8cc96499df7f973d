from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from devices import views as device_views

urlpatterns = [
    path("events", device_views.EventsView.as_view(), name="events"),
    path("devices/refresh-token", device_views.RefreshTokenView.as_view(), name="refresh-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
