"""The sandbox's own URLconf, served by ``manage.py fcm_sandbox`` (never by Herald's)."""

from django.urls import path

from fcm_sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("token", views.token, name="token"),
    path("v1/projects/<str:project>/messages:send", views.send, name="send"),
    path("", views.inbox, name="inbox"),
    path("inbox.json", views.inbox_json, name="inbox-json"),
    path("status", views.status, name="status"),
    path("favicon.ico", views.no_icon),
]

handler404 = "fcm_sandbox.views.not_found"
