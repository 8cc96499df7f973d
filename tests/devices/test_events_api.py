"""POST /events: one call records an event and upserts the user and the device."""

from datetime import UTC, datetime

from devices.models import AppUser, Device, Event


def test_a_fresh_install_registers_its_user_and_device_with_one_event(api, event_body):
    response = api("/events", event_body)

    assert response.status_code == 200
    assert set(response.json()) == {"fingerprint"}
    device = Device.objects.get()
    assert device.token == "fcm-token-aaa"
    assert device.platform == "android"
    assert device.push_permission is True
    assert device.is_active is True
    assert device.last_session_id == "sess-1"
    assert device.user.app_user_id == "user_123"
    assert (device.user.language, device.user.country, device.user.timezone) == (
        "tr",
        "TR",
        "Europe/Istanbul",
    )
    assert Device.objects.targetable().count() == 1


def test_the_event_is_stored_with_its_time_params_and_session(api, event_body):
    fingerprint = api("/events", event_body).json()["fingerprint"]

    event = Event.objects.get()
    assert event.fingerprint == fingerprint
    assert event.name == "app_opened"
    assert event.occurred_at == datetime(2026, 11, 23, 7, 15, tzinfo=UTC)
    assert event.params == {"screen": "home", "count": 3, "nested": {"ok": True}}
    assert event.session_id == "sess-1"
    assert event.device == Device.objects.get()


def test_a_retried_event_is_stored_once_and_answers_the_same_fingerprint(api, event_body):
    first = api("/events", event_body).json()["fingerprint"]
    second = api("/events", event_body).json()["fingerprint"]

    assert first == second
    assert Event.objects.count() == 1


def test_different_events_get_different_fingerprints(api, event_body):
    first = api("/events", event_body).json()["fingerprint"]
    second = api("/events", {**event_body, "event_name": "purchase_completed"}).json()["fingerprint"]

    assert first != second
    assert Event.objects.count() == 2


def test_a_known_token_updates_its_device_instead_of_creating_another(register):
    register()
    register(platform="ios", session_id="sess-2", event_name="purchase_completed")

    device = Device.objects.get()
    assert device.platform == "ios"
    assert device.last_session_id == "sess-2"
    assert Event.objects.count() == 2


def test_an_event_from_another_user_moves_the_device_to_that_user(register):
    register(app_user_id="alice")
    register(app_user_id="bob")

    assert Device.objects.get().user.app_user_id == "bob"
    assert AppUser.objects.count() == 2


def test_withdrawing_push_permission_makes_the_device_untargetable(register):
    register(push_permission_granted=True)
    register(push_permission_granted=False)

    assert Device.objects.targetable().count() == 0
    assert Device.objects.get().push_permission is False


def test_a_deactivated_device_comes_back_to_life_with_its_next_event(register):
    register()
    Device.objects.get().deactivate(reason="UNREGISTERED")
    assert Device.objects.targetable().count() == 0

    register()

    device = Device.objects.get()
    assert device.is_active is True
    assert device.deactivated_at is None
    assert device.deactivation_reason == ""


def test_an_event_without_a_user_gets_an_anonymous_id_that_stays_with_the_device(register):
    register(app_user_id="")
    register(app_user_id="", event_name="screen_viewed")
    register(app_user_id="", device_token="fcm-token-other")  # another install

    first, other = (Device.objects.get(token=t).user for t in ("fcm-token-aaa", "fcm-token-other"))
    assert first.is_anonymous and other.is_anonymous
    assert first.app_user_id.startswith("anon_")
    assert first != other
    assert Event.objects.filter(user=first).count() == 2


def test_an_anonymous_id_survives_a_token_rotation(register, api):
    register(app_user_id="")
    anonymous = Device.objects.get().user
    api("/devices/refresh-token", {"old_token": "fcm-token-aaa", "new_token": "fcm-token-bbb"})

    register(app_user_id="", device_token="fcm-token-bbb")

    assert Device.objects.get().user == anonymous
    assert AppUser.objects.count() == 1


def test_the_user_profile_follows_the_latest_event(register):
    register()
    register(language="en", country="gb", timezone="Europe/London")

    user = AppUser.objects.get()
    assert (user.language, user.country, user.timezone) == ("en", "GB", "Europe/London")


def test_params_are_optional(api, event_body):
    del event_body["params"]

    assert api("/events", event_body).status_code == 200
    assert Event.objects.get().params == {}


def test_a_device_can_say_its_token_is_a_firebase_installation_id(register):
    register(token_kind="fid")

    assert Device.objects.get().token_kind == "fid"


def test_the_same_token_in_two_tenants_is_two_devices(api, event_body, client):
    from tenants.models import ApiKey, Tenant

    other = Tenant.objects.create(name="Other", tenant_id="other")
    other_key = ApiKey.generate(tenant=other, name="app", kind="app")[1]
    api("/events", event_body)

    response = client.post(
        "/events", {**event_body, "tenant_id": "other", "api_key": other_key}, format="json"
    )

    assert response.status_code == 200
    assert Device.objects.count() == 2
    assert Device.objects.filter(tenant=other).count() == 1


def test_text_beyond_ascii_and_quotes_are_stored_exactly_as_sent(register):
    body = {
        "app_user_id": "kullanıcı-ğüş",
        "device_token": "tok-é-😀",
        "session_id": "oturum 🎉",
        "event_name": "satın_alındı",
        "event_time": "2026-11-23T10:15:00.123456+05:45",
        "params": {"şehir": "İstanbul", "quote": "a'b\"c\\d%s", "emoji": ["🎉", {"ñ": None}], "n": 1.5},
    }
    register(**body)

    event = Event.objects.get()
    assert event.user.app_user_id == "kullanıcı-ğüş"
    assert event.device.token == "tok-é-😀"
    assert (event.name, event.session_id) == ("satın_alındı", "oturum 🎉")
    assert event.params == body["params"]
    assert event.occurred_at == datetime(2026, 11, 23, 4, 30, 0, 123456, tzinfo=UTC)
