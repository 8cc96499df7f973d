"""POST /devices/refresh-token: seed 001's contract, status code by status code."""

import pytest

from devices.models import AppUser, Device, Event, TokenRotation
from tests.conftest import OMIT


@pytest.fixture
def refresh(api):
    def refresh(old_token="fcm-token-aaa", new_token="fcm-token-bbb", **extra):
        return api("/devices/refresh-token", {"old_token": old_token, "new_token": new_token, **extra})

    return refresh


def test_the_seed_example_body_swaps_the_token_on_the_same_row(register, refresh):
    register()
    device = Device.objects.get()

    response = refresh(app_user_id="user_123", platform="android")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    device.refresh_from_db()
    assert device.token == "fcm-token-bbb"
    assert Device.objects.count() == 1


def test_the_old_token_is_kept_in_history_and_can_no_longer_be_targeted(register, refresh):
    register()

    refresh()

    rotation = TokenRotation.objects.get()
    assert (rotation.old_token, rotation.new_token) == ("fcm-token-aaa", "fcm-token-bbb")
    assert rotation.device == Device.objects.get()
    assert not Device.objects.targetable().filter(token="fcm-token-aaa").exists()
    assert Device.objects.targetable().filter(token="fcm-token-bbb").exists()


def test_a_chain_of_rotations_keeps_every_old_token(register, refresh):
    register()
    refresh("fcm-token-aaa", "fcm-token-bbb")
    refresh("fcm-token-bbb", "fcm-token-ccc")

    device = Device.objects.get()
    assert device.token == "fcm-token-ccc"
    assert [r.old_token for r in device.rotations.all()] == ["fcm-token-bbb", "fcm-token-aaa"]


@pytest.mark.parametrize("missing", ["old_token", "new_token"])
def test_a_missing_token_is_a_400(register, refresh, missing):
    register()

    response = refresh(**{missing: OMIT})

    assert response.status_code == 400
    assert response.json()["error"] == "missing_field"
    assert response.json()["field"] == missing


@pytest.mark.parametrize("missing", ["old_token", "new_token"])
def test_an_empty_token_is_a_400(register, refresh, missing):
    register()

    response = refresh(**{missing: ""})

    assert response.status_code == 400
    assert response.json()["field"] == missing


def test_identical_tokens_are_a_400(register, refresh):
    register()

    response = refresh("fcm-token-aaa", "fcm-token-aaa")

    assert response.status_code == 400
    assert response.json() == {
        "error": "identical_tokens",
        "detail": "old_token and new_token must be different.",
    }


@pytest.mark.parametrize(
    "credentials",
    [
        {"api_key": "hrld_app_wrong"},
        {"tenant_id": "nobody"},
    ],
)
def test_bad_credentials_are_a_401(register, refresh, credentials):
    register()

    response = refresh(**credentials)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert Device.objects.get().token == "fcm-token-aaa"


def test_an_unknown_old_token_is_a_404(register, refresh):
    register()

    response = refresh("fcm-token-never-seen", "fcm-token-bbb")

    assert response.status_code == 404
    assert response.json()["error"] == "device_not_found"


def test_another_tenants_device_is_not_found(register, refresh, client, event_body):
    from tenants.models import ApiKey, Tenant

    other = Tenant.objects.create(name="Other", tenant_id="other")
    key = ApiKey.generate(tenant=other, name="app", kind="app")[1]
    client.post("/events", {**event_body, "tenant_id": "other", "api_key": key}, format="json")

    response = refresh()

    assert response.status_code == 404
    assert Device.objects.get(tenant=other).token == "fcm-token-aaa"


def test_a_new_token_registered_to_a_different_user_is_a_409_and_changes_nothing(register, refresh):
    register(app_user_id="alice", device_token="fcm-token-aaa")
    register(app_user_id="bob", device_token="fcm-token-bbb")

    response = refresh(app_user_id="alice")

    assert response.status_code == 409
    assert response.json()["error"] == "token_owned_by_another_user"
    assert sorted(Device.objects.values_list("token", "user__app_user_id")) == [
        ("fcm-token-aaa", "alice"),
        ("fcm-token-bbb", "bob"),
    ]
    assert TokenRotation.objects.count() == 0


def test_without_app_user_id_the_devices_own_user_decides_the_conflict(register, refresh):
    register(app_user_id="alice", device_token="fcm-token-aaa")
    register(app_user_id="bob", device_token="fcm-token-bbb")

    assert refresh().status_code == 409


def test_a_new_token_already_held_by_the_same_user_merges_into_one_device(register, refresh):
    register(app_user_id="alice", device_token="fcm-token-aaa", event_name="first")
    original = Device.objects.get()
    register(app_user_id="alice", device_token="fcm-token-bbb", event_name="second")

    response = refresh(app_user_id="alice")

    assert response.status_code == 200
    device = Device.objects.get()
    assert device.pk == original.pk
    assert device.token == "fcm-token-bbb"
    assert set(Event.objects.values_list("device", flat=True)) == {original.pk}
    assert Event.objects.count() == 2


def test_a_new_token_held_by_an_anonymous_user_merges_into_the_known_users_device(register, refresh):
    register(app_user_id="alice", device_token="fcm-token-aaa")
    register(app_user_id="", device_token="fcm-token-bbb")

    assert refresh(app_user_id="alice").status_code == 200

    device = Device.objects.get()
    assert (device.token, device.user.app_user_id) == ("fcm-token-bbb", "alice")


def test_an_anonymous_device_adopts_the_known_user_already_holding_the_new_token(register, refresh):
    register(app_user_id="", device_token="fcm-token-aaa")
    register(app_user_id="alice", device_token="fcm-token-bbb")

    assert refresh().status_code == 200

    device = Device.objects.get()
    assert (device.token, device.user.app_user_id) == ("fcm-token-bbb", "alice")


def test_the_merged_device_keeps_the_permission_it_reported_last(register, refresh):
    register(app_user_id="alice", device_token="fcm-token-aaa", push_permission_granted=True)
    register(app_user_id="alice", device_token="fcm-token-bbb", push_permission_granted=False)

    refresh()

    assert Device.objects.get().push_permission is False


def test_retrying_a_refresh_that_already_happened_succeeds_again(register, refresh):
    register()
    assert refresh().status_code == 200

    response = refresh()

    assert response.status_code == 200
    assert TokenRotation.objects.count() == 1


def test_app_user_id_and_platform_update_the_device(register, refresh):
    register(app_user_id="alice", platform="android")

    refresh(app_user_id="carol", platform="ios")

    device = Device.objects.get()
    assert (device.user.app_user_id, device.platform) == ("carol", "ios")
    assert AppUser.objects.filter(app_user_id="carol").exists()


def test_an_unknown_platform_is_a_400(register, refresh):
    register()

    response = refresh(platform="symbian")

    assert response.status_code == 400
    assert response.json()["field"] == "platform"
    assert Device.objects.get().token == "fcm-token-aaa"


def test_a_token_over_4096_characters_is_a_400(register, refresh):
    register()

    response = refresh(new_token="n" * 4097)

    assert response.status_code == 400
    assert response.json()["field"] == "new_token"


def test_a_refresh_revives_a_deactivated_device(register, refresh):
    register()
    Device.objects.get().deactivate(reason="UNREGISTERED")

    refresh()

    device = Device.objects.get()
    assert device.is_active and device.deactivation_reason == ""
    assert Device.objects.targetable().count() == 1
