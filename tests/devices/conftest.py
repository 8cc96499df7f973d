import pytest

EVENT = {
    "app_user_id": "user_123",
    "event_name": "app_opened",
    "event_time": "2026-11-23T10:15:00+03:00",
    "device_token": "fcm-token-aaa",
    "platform": "android",
    "push_permission_granted": True,
    "timezone": "Europe/Istanbul",
    "language": "tr",
    "country": "TR",
    "session_id": "sess-1",
    "params": {"screen": "home", "count": 3, "nested": {"ok": True}},
}


@pytest.fixture
def event_body():
    """A valid POST /events body, as CLIENT_API.md describes it (credentials added by `api`)."""
    return dict(EVENT)


@pytest.fixture
def register(api, event_body):
    """Register a device through POST /events and return the response."""

    def register(**overrides):
        response = api("/events", {**event_body, **overrides})
        assert response.status_code == 200, response.content
        return response

    return register
