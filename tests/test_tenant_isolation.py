"""A key or a staff member of one tenant can neither read nor change anything of another.

"Ours" is the tenant whose keys and staff act; "theirs" is a tenant beside it holding a
user, devices, events, a token rotation, messages with deliveries and API keys. After
every attempt, everything of theirs is exactly as it was, down to the last column.
"""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audiences.models import Segment
from campaigns.models import Campaign, CampaignVersion
from devices.models import AppUser, Device, Event, TokenRotation, hash_token
from messaging import services
from messaging.models import Delivery, Message
from tenants.models import ApiKey, FirebaseCredential, Membership, Tenant

pytestmark = pytest.mark.django_db

THEIR_TOKEN = "their-device-token"
THEIR_OLD_TOKEN = "their-old-device-token"
THEIR_USER = "their-user"


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.RATE_LIMIT_PER_IP = settings.RATE_LIMIT_PER_KEY = settings.DEVELOPER_PUSH_RATE = ""


@pytest.fixture
def ours(db):
    tenant = Tenant.objects.create(name="Acme", tenant_id="acme")
    return {
        "tenant": tenant,
        "app_key": ApiKey.generate(tenant=tenant, name="app", kind=ApiKey.Kind.APP)[1],
        "server_key": ApiKey.generate(tenant=tenant, name="server", kind=ApiKey.Kind.SERVER)[1],
    }


@pytest.fixture
def theirs(db):
    tenant = Tenant.objects.create(name="Globex", tenant_id="globex")
    user = AppUser.objects.create(tenant=tenant, app_user_id=THEIR_USER, country="DE", language="de")
    device = Device.objects.create(
        tenant=tenant, user=user, token=THEIR_TOKEN, platform="ios", push_permission=True
    )
    TokenRotation.objects.create(
        device=device,
        old_token=THEIR_OLD_TOKEN,
        new_token=THEIR_TOKEN,
        old_token_hash=hash_token(THEIR_OLD_TOKEN),
    )
    event = Event.objects.create(
        tenant=tenant,
        user=user,
        device=device,
        name="purchase",
        occurred_at=timezone.now(),
        session_id="s",
        fingerprint="f" * 32,
    )
    sent = Message.objects.create(
        tenant=tenant, title="Sent", body="Theirs", status="completed", targeted_count=1, sent_count=1
    )
    delivery = Delivery.objects.create(message=sent, device=device, status="sent", sent_at=timezone.now())
    scheduled = Message.objects.create(
        tenant=tenant,
        title="Later",
        body="Theirs",
        status="scheduled",
        schedule_at=timezone.now() + timezone.timedelta(days=1),
        idempotency_key="idem:shared-key",
    )
    draft = Message.objects.create(
        tenant=tenant, title="Draft", body="Theirs", status="draft", idempotency_key="dedupe:shared-dedupe"
    )
    key, _ = ApiKey.generate(tenant=tenant, name="their server", kind=ApiKey.Kind.SERVER)
    segment = Segment.objects.create(
        tenant=tenant, name="Their buyers", rules={"version": 1, "include": [], "exclude": []}
    )
    campaign = Campaign.objects.create(
        tenant=tenant,
        name="Their cart reminder",
        kind="triggered",
        trigger_event="cart_abandoned",
        status="active",
        content={"language": "en", "variants": [{"title": "Theirs", "body": "Theirs"}]},
    )
    draft_campaign = Campaign.objects.create(
        tenant=tenant, name="Their draft campaign", kind="triggered", trigger_event="purchase"
    )
    return {
        "tenant": tenant,
        "user": user,
        "device": device,
        "event": event,
        "sent": sent,
        "delivery": delivery,
        "scheduled": scheduled,
        "draft": draft,
        "key": key,
        "segment": segment,
        "campaign": campaign,
        "draft_campaign": draft_campaign,
    }


def everything_of(tenant: Tenant) -> dict:
    """Every row of a tenant, every column: what must not change."""
    return {
        "tenant": list(Tenant.objects.filter(pk=tenant.pk).values()),
        "users": list(AppUser.objects.filter(tenant=tenant).order_by("pk").values()),
        "devices": list(Device.objects.filter(tenant=tenant).order_by("pk").values()),
        "rotations": list(TokenRotation.objects.filter(device__tenant=tenant).order_by("pk").values()),
        "events": list(Event.objects.filter(tenant=tenant).order_by("pk").values()),
        "messages": list(Message.objects.filter(tenant=tenant).order_by("pk").values()),
        "deliveries": list(Delivery.objects.filter(message__tenant=tenant).order_by("pk").values()),
        "keys": list(ApiKey.objects.filter(tenant=tenant).order_by("pk").values()),
        "credentials": list(FirebaseCredential.objects.filter(tenant=tenant).values()),
        "segments": list(Segment.objects.filter(tenant=tenant).order_by("pk").values()),
        "campaigns": list(Campaign.objects.filter(tenant=tenant).order_by("pk").values()),
        "versions": list(CampaignVersion.objects.filter(campaign__tenant=tenant).order_by("pk").values()),
    }


@pytest.fixture
def untouched(theirs):
    """Asserts, after the test, that nothing of theirs changed."""
    before = everything_of(theirs["tenant"])
    yield
    assert everything_of(theirs["tenant"]) == before


def app(ours, path, **body):
    payload = {"tenant_id": ours["tenant"].tenant_id, "api_key": ours["app_key"], **body}
    return APIClient().post(path, payload, format="json")


def server(ours) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=ours["server_key"])
    return client


def event_body(**fields) -> dict:
    return {
        "event_name": "app_opened",
        "event_time": "2026-11-23T10:00:00+03:00",
        "platform": "android",
        "push_permission_granted": False,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": "ours",
        **fields,
    }


# --- The app endpoints ------------------------------------------------------------------


def test_an_event_with_their_token_registers_our_own_device_and_leaves_theirs_alone(ours, untouched):
    response = app(ours, "/events", **event_body(device_token=THEIR_TOKEN, app_user_id=THEIR_USER))

    assert response.status_code == 200
    device = Device.objects.get(tenant=ours["tenant"])
    assert device.token == THEIR_TOKEN and device.user.app_user_id == THEIR_USER
    assert device.user.tenant == ours["tenant"]


def test_an_event_naming_their_tenant_with_our_key_is_refused(ours, theirs, untouched):
    response = app(
        ours, "/events", **event_body(device_token="new-token"), tenant_id=theirs["tenant"].tenant_id
    )

    assert response.status_code == 401
    assert not Device.objects.filter(token_hash__isnull=False, tenant=ours["tenant"]).exists()


@pytest.mark.parametrize("kind", ["app_key", "server_key"])
def test_a_refresh_of_their_token_is_not_found(ours, kind, untouched):
    response = APIClient().post(
        "/devices/refresh-token",
        {
            "tenant_id": ours["tenant"].tenant_id,
            "api_key": ours[kind],
            "old_token": THEIR_TOKEN,
            "new_token": "stolen-token",
            "app_user_id": THEIR_USER,
        },
        format="json",
    )

    assert response.status_code == 404
    assert response.json()["error"] == "device_not_found"


@pytest.mark.parametrize("new_token", [THEIR_TOKEN, "stolen-token"])
def test_a_refresh_of_their_rotated_away_token_is_not_found(ours, new_token, untouched):
    # With their current token as new_token it looks like a retry of their own rotation.
    response = app(ours, "/devices/refresh-token", old_token=THEIR_OLD_TOKEN, new_token=new_token)

    assert response.status_code == 404


def test_a_refresh_to_their_token_takes_no_notice_of_their_device(ours, untouched):
    # Their device holding new_token must neither cause a 409 (which would reveal it) nor be merged.
    app(ours, "/events", **event_body(device_token="our-token", app_user_id="our-user"))

    response = app(
        ours, "/devices/refresh-token", old_token="our-token", new_token=THEIR_TOKEN, app_user_id="our-user"
    )

    assert response.status_code == 200
    assert Device.objects.get(tenant=ours["tenant"]).token == THEIR_TOKEN


def test_an_open_of_their_tracking_token_is_not_found(ours, theirs, untouched):
    response = app(ours, "/pushes/opened", tracking_token=theirs["delivery"].tracking_token)

    assert response.status_code == 404
    assert response.json()["error"] == "delivery_not_found"


# --- The server endpoints ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sent", "scheduled", "draft"])
def test_their_message_is_not_found(ours, theirs, which, untouched):
    response = server(ours).get(f"/api/v1/messages/{theirs[which].pk}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("which", ["sent", "scheduled", "draft"])
def test_their_message_cannot_be_cancelled(ours, theirs, which, untouched):
    response = server(ours).post(f"/api/v1/messages/{theirs[which].pk}/cancel")

    assert response.status_code == 404


def test_the_message_list_shows_none_of_theirs(ours, theirs, untouched):
    services.create_message(
        tenant=ours["tenant"], spec=services.MessageInput(title="Ours", body="Hi"), send=False
    )

    listed = server(ours).get("/api/v1/messages", {"page_size": 200}).json()

    assert [m["title"] for m in listed["results"]] == ["Ours"]
    assert listed["count"] == 1


def test_our_idempotency_key_never_returns_their_message(ours, theirs, untouched):
    response = server(ours).post(
        "/api/v1/messages", {"title": "Ours", "body": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="shared-key"
    )

    assert response.status_code == 202
    assert response.json()["id"] != theirs["scheduled"].pk
    assert Message.objects.get(pk=response.json()["id"]).tenant == ours["tenant"]


@pytest.mark.parametrize(
    "audience",
    [
        {"kind": "all"},
        {"kind": "users", "app_user_ids": [THEIR_USER]},
        {"kind": "tokens", "tokens": [THEIR_TOKEN]},
        {"kind": "filter", "countries": ["DE"], "platforms": ["ios"]},
    ],
)
def test_a_message_of_ours_never_reaches_their_devices(ours, theirs, audience, untouched):
    response = server(ours).post(
        "/api/v1/messages", {"title": "Ours", "body": "Hi", "audience": audience}, format="json"
    )
    assert response.status_code == 202

    services.fan_out(message_id=response.json()["id"])

    message = Message.objects.get(pk=response.json()["id"])
    assert message.targeted_count == 0
    assert not message.deliveries.exists()


def test_a_developer_push_to_their_user_is_not_found(ours, untouched):
    response = server(ours).post(
        "/developer/push", {"app_user_id": THEIR_USER, "title": "Hi", "body": "x"}, format="json"
    )

    assert response.status_code == 404
    assert not Message.objects.filter(tenant__tenant_id="acme").exists()


def test_our_dedupe_key_never_returns_their_push(ours, theirs, untouched):
    app(
        ours,
        "/events",
        **event_body(device_token="our-token", app_user_id="our-user", push_permission_granted=True),
    )

    response = server(ours).post(
        "/developer/push",
        {"app_user_id": "our-user", "title": "Hi", "body": "x", "dedupe_key": "shared-dedupe"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json() == {"push_count": 1, "app_user_id": "our-user", "app_id": "acme"}
    assert Message.objects.filter(tenant=ours["tenant"]).count() == 1


CAMPAIGN_BODY = {
    "name": "Our cart reminder",
    "kind": "triggered",
    "trigger_event": "cart_abandoned",
    "cooldown": "1d",
    "content": {"variants": [{"title": "Ours", "body": "Ours"}]},
}


@pytest.mark.parametrize("which", ["campaign", "draft_campaign"])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/activate"),
        ("post", "/pause"),
        ("post", "/resume"),
        ("post", "/archive"),
        ("get", "/stats"),
    ],
)
def test_their_campaign_is_not_found(ours, theirs, which, method, suffix, untouched):
    response = getattr(server(ours), method)(
        f"/api/v1/campaigns/{theirs[which].pk}{suffix}", {**CAMPAIGN_BODY, "name": "Taken"}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_the_campaign_list_shows_none_of_theirs(ours, theirs, untouched):
    server(ours).post("/api/v1/campaigns", CAMPAIGN_BODY, format="json")

    listed = server(ours).get("/api/v1/campaigns", {"page_size": 200}).json()

    assert [c["name"] for c in listed["results"]] == ["Our cart reminder"]


def test_a_campaign_of_ours_cannot_target_their_segment(ours, theirs, untouched):
    response = server(ours).post(
        "/api/v1/campaigns",
        {**CAMPAIGN_BODY, "audience": {"kind": "segment", "segment_id": theirs["segment"].pk}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "audience.segment_id"
    assert not Campaign.objects.filter(tenant=ours["tenant"]).exists()


def test_our_campaign_cannot_be_changed_to_their_segment(ours, theirs, untouched):
    created = server(ours).post("/api/v1/campaigns", CAMPAIGN_BODY, format="json").json()

    response = server(ours).patch(
        f"/api/v1/campaigns/{created['id']}",
        {"audience": {"kind": "segment", "segment_id": theirs["segment"].pk}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "audience.segment_id"
    assert Campaign.objects.get(pk=created["id"]).segment_id is None


def test_their_server_key_does_not_open_our_messages(ours, theirs):
    # The same from the other side: a key acts for its own tenant only, whatever it names.
    ours_message, _ = services.create_message(
        tenant=ours["tenant"], spec=services.MessageInput(title="Ours", body="Hi"), send=False
    )
    _, their_raw = ApiKey.generate(tenant=theirs["tenant"], name="another", kind=ApiKey.Kind.SERVER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {their_raw}")

    assert client.get(f"/api/v1/messages/{ours_message.pk}").status_code == 404
    assert client.post(f"/api/v1/messages/{ours_message.pk}/cancel").status_code == 404
    assert ours_message.title not in str(client.get("/api/v1/messages").json())


# --- The admin ------------------------------------------------------------------------------


def staff_of(tenant: Tenant, *, role: str = Membership.Role.ADMIN, superuser: bool = False) -> Client:
    user = User.objects.create_user(f"staff-{role}-{superuser}", is_staff=True, is_superuser=superuser)
    if not superuser:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def our_admin(ours):
    """Staff with the strongest role in our tenant, and none in theirs."""
    return staff_of(ours["tenant"])


@pytest.fixture
def our_objects(ours, theirs):
    """One of each kind in our tenant too, so that lists have something to show."""
    user = AppUser.objects.create(tenant=ours["tenant"], app_user_id="our-user")
    device = Device.objects.create(tenant=ours["tenant"], user=user, token="our-token", platform="android")
    Event.objects.create(
        tenant=ours["tenant"],
        user=user,
        device=device,
        name="our_event",
        occurred_at=timezone.now(),
        session_id="s",
        fingerprint="o" * 32,
    )
    Message.objects.create(tenant=ours["tenant"], title="Our message", body="Ours", status="draft")
    Campaign.objects.create(tenant=ours["tenant"], name="Our campaign", kind="triggered", trigger_event="x")
    return {"user": user, "device": device}


def their_urls(theirs) -> dict[str, list[str]]:
    """Every admin page of their objects, by model."""
    device, message, key = theirs["device"].pk, theirs["scheduled"].pk, theirs["key"].pk
    return {
        "device": [
            f"/admin/devices/device/{device}/change/",
            f"/admin/devices/device/{device}/history/",
            f"/admin/devices/device/{device}/deactivate/",
        ],
        "appuser": [f"/admin/devices/appuser/{theirs['user'].pk}/change/"],
        "event": [f"/admin/devices/event/{theirs['event'].pk}/change/"],
        "message": [
            f"/admin/messaging/message/{message}/change/",
            f"/admin/messaging/message/{message}/progress/",
            f"/admin/messaging/message/{message}/cancel/",
            f"/admin/messaging/message/{theirs['draft'].pk}/send/",
            f"/admin/messaging/message/compose/?from={message}",
        ],
        "apikey": [f"/admin/tenants/apikey/{key}/change/", f"/admin/tenants/apikey/{key}/revoke/"],
        "tenant": [f"/admin/tenants/tenant/{theirs['tenant'].pk}/change/"],
        "campaign": [
            f"/admin/campaigns/campaign/{theirs['campaign'].pk}/{page}/"
            for page in ("change", "edit", "history", "pause", "archive", "delete")
        ]
        + [
            f"/admin/campaigns/campaign/{theirs['draft_campaign'].pk}/{page}/"
            for page in ("change", "edit", "activate")
        ],
    }


@pytest.mark.parametrize("model", ["device", "appuser", "event", "message", "apikey", "tenant", "campaign"])
def test_their_admin_pages_are_not_found(our_admin, ours, theirs, model, untouched):
    for url in their_urls(theirs)[model]:
        assert our_admin.get(url).status_code == 404, url
        if "?" not in url:  # the composer reads ?from= on GET only
            assert our_admin.post(url, {"confirmed": "yes"}).status_code == 404, url


@pytest.mark.parametrize("model", ["device", "appuser", "event", "message", "apikey", "campaign"])
def test_their_admin_pages_exist_for_a_superuser(ours, theirs, model):
    # Proves the 404s above come from scoping, not from a wrong URL.
    root = staff_of(ours["tenant"], superuser=True)
    for url in their_urls(theirs)[model]:
        transition = url.endswith(("/activate/", "/pause/", "/archive/"))  # GET goes back to the page
        assert root.get(url).status_code == (302 if transition else 200), url


@pytest.mark.parametrize(
    ("changelist", "ours_shows", "theirs_shows"),
    [
        ("/admin/devices/device/", "our-token"[-12:], THEIR_TOKEN[-12:]),
        ("/admin/devices/appuser/", "our-user", THEIR_USER),
        ("/admin/devices/event/", "our_event", "purchase"),
        ("/admin/messaging/message/", "Our message", "Later"),
        ("/admin/tenants/apikey/", "server", "their server"),
        ("/admin/campaigns/campaign/", "Our campaign", "Their cart reminder"),
    ],
)
def test_their_rows_are_not_in_our_lists(
    our_admin, our_objects, changelist, ours_shows, theirs_shows, untouched
):
    page = our_admin.get(changelist)

    assert page.status_code == 200
    assert ours_shows in page.content.decode()
    assert theirs_shows not in page.content.decode()


@pytest.mark.parametrize(
    ("changelist", "query"),
    [
        ("/admin/devices/device/", THEIR_TOKEN),
        ("/admin/devices/appuser/", THEIR_USER),
        ("/admin/devices/event/", "purchase"),
        ("/admin/messaging/message/", "Later"),
        ("/admin/tenants/apikey/", "their server"),
        ("/admin/campaigns/campaign/", "Their cart reminder"),
    ],
)
def test_searching_our_lists_finds_none_of_theirs(
    our_admin, our_objects, theirs, changelist, query, untouched
):
    page = our_admin.get(changelist, {"q": query})

    assert page.status_code == 200
    assert page.context["cl"].result_count == 0


@pytest.mark.parametrize(
    ("changelist", "action", "which"),
    [
        ("/admin/devices/device/", "deactivate_selected", "device"),
        ("/admin/tenants/apikey/", "revoke_keys", "key"),
    ],
)
def test_a_bulk_action_on_their_rows_changes_nothing(
    our_admin, our_objects, theirs, changelist, action, which, untouched
):
    response = our_admin.post(
        changelist, {"action": action, "_selected_action": [theirs[which].pk], "confirmed": "yes"}
    )

    assert response.status_code in (200, 302)


def test_the_composer_cannot_send_as_their_tenant(our_admin, theirs, untouched):
    response = our_admin.post(
        "/admin/messaging/message/compose/",
        {
            "tenant": theirs["tenant"].pk,
            "title": "Hi",
            "body": "There",
            "audience": "all",
            "when": "now",
            "schedule_tz": "UTC",
            "priority": "5",
            "data_only": "1",
            "_action": "confirm",
        },
    )

    assert response.status_code == 200  # the form again, with the tenant refused
    assert "tenant" in response.context["form"].errors
