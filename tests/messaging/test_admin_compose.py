"""The composer: who may use it, what it targets, how it confirms, validates and tests."""

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from devices.models import Device
from fcm_sandbox.models import SandboxMessage
from messaging.models import Audience, Message
from tests.staff import make_device, make_message

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
COMPOSE = "/admin/messaging/message/compose/"
AUDIENCE = "/admin/messaging/message/compose/audience/"


def form(tenant, **fields):
    return {
        "tenant": tenant.pk,
        "title": "Your order is on its way",
        "body": "Arriving today.",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        **fields,
    }


@pytest.fixture
def phones(tenant):
    return [
        make_device(tenant, "tok-android-" + "a" * 20, user="ayse", platform="android"),
        make_device(tenant, "tok-ios-" + "b" * 20, user="ayse", platform="ios"),
        make_device(tenant, "tok-web-" + "c" * 20, user="bora", platform="web", country="DE", language="de"),
        make_device(tenant, "tok-muted-" + "d" * 20, user="cem", permission=False),
    ]


# --- Who may compose ----------------------------------------------------------------------


def test_a_viewer_cannot_open_the_composer(viewer):
    assert viewer.get(COMPOSE).status_code == 403


def test_a_viewer_cannot_send_a_message(viewer, tenant, phones):
    response = viewer.post(COMPOSE, form(tenant, _action="confirm"))

    assert response.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.parametrize("action", ["validate", "test", "send"])
def test_a_viewer_cannot_validate_test_or_ask_to_send(viewer, tenant, action):
    assert viewer.post(COMPOSE, form(tenant, _action=action, test_to="ayse")).status_code == 403


def test_a_viewer_cannot_count_an_audience(viewer, tenant):
    assert viewer.post(AUDIENCE, form(tenant)).status_code == 403


def test_the_composer_offers_only_the_tenants_the_editor_may_send_for(tenant, other_tenant):
    from tests.staff import signed_in, staff_user

    user = staff_user("multi", tenant=tenant, role="editor")
    user.memberships.create(tenant=other_tenant, role="viewer")

    page = signed_in(user).get(COMPOSE).content.decode()

    assert f'name="tenant" value="{tenant.pk}"' in page  # the only one: chosen, hidden
    assert "Globex" not in page


def test_an_editor_cannot_send_for_another_tenant(editor, other_tenant):
    make_device(other_tenant, "tok-globex-" + "g" * 20)

    response = editor.post(COMPOSE, form(other_tenant, _action="confirm"))

    assert b"Select a valid choice" in response.content
    assert not Message.objects.exists()


# --- Confirming and sending --------------------------------------------------------------


def test_sending_first_asks_for_confirmation_stating_the_audience_size(editor, tenant, phones):
    response = editor.post(COMPOSE, form(tenant, _action="send"))

    assert "Send “Your order is on its way” to 3 devices now?" in response.content.decode()
    assert b'value="confirm"' in response.content
    assert not Message.objects.exists()


def test_the_confirmation_also_comes_as_json_for_the_page_script(editor, tenant, phones):
    answer = editor.post(COMPOSE, form(tenant, _action="send", _format="json")).json()

    assert answer == {
        "ok": True,
        "size": 3,
        "blocked": False,
        "confirm": "Send “Your order is on its way” to 3 devices now?",
    }


def test_confirming_creates_the_message_and_starts_sending(editor, tenant, phones):
    response = editor.post(
        COMPOSE,
        form(
            tenant,
            _action="confirm",
            data_key=["order_id", ""],
            data_value=["A-1042", ""],
            android_channel="orders",
            badge="3",
            priority="10",
        ),
    )

    message = Message.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{message.pk}/change/")
    assert (message.tenant, message.source, message.created_by.username) == (tenant, "admin", "eddie")
    assert message.status == Message.Status.SENDING
    assert message.data == {"order_id": "A-1042"}
    assert message.options == {"android_channel": "orders", "badge": 3}
    assert (message.priority, message.ttl_seconds) == (10, 4 * 7 * 86400)


def test_nothing_is_sent_now_when_no_device_matches(editor, tenant):
    answer = editor.post(COMPOSE, form(tenant, _action="send", _format="json")).json()
    response = editor.post(COMPOSE, form(tenant, _action="confirm"))

    assert answer["blocked"] and "nothing would be sent" in answer["confirm"]
    assert response.status_code == 200
    assert not Message.objects.exists()


def test_scheduling_reads_the_time_in_the_chosen_time_zone(editor, tenant, phones):
    day = (timezone.now() + timedelta(days=2)).date()

    response = editor.post(
        COMPOSE,
        form(
            tenant, _action="confirm", when="later", schedule_at=f"{day}T09:30", schedule_tz="Europe/Istanbul"
        ),
    )

    message = Message.objects.get()
    assert response.status_code == 302
    assert message.status == Message.Status.SCHEDULED
    assert (
        message.schedule_at.astimezone(ZoneInfo("Europe/Istanbul")).strftime("%Y-%m-%d %H:%M")
        == f"{day} 09:30"
    )


def test_the_schedule_confirmation_names_the_time_and_zone(editor, tenant, phones):
    day = (timezone.now() + timedelta(days=2)).date()

    answer = editor.post(
        COMPOSE,
        form(
            tenant,
            _action="send",
            _format="json",
            when="later",
            schedule_at=f"{day}T09:30",
            schedule_tz="Asia/Tokyo",
        ),
    ).json()

    assert "09:30 (Asia/Tokyo)" in answer["confirm"] and "would reach 3 devices" in answer["confirm"]


def test_a_time_in_the_past_is_refused(editor, tenant, phones):
    response = editor.post(
        COMPOSE, form(tenant, _action="confirm", when="later", schedule_at="2020-01-01T09:00")
    )

    assert b"That time has passed" in response.content
    assert not Message.objects.exists()


def test_a_ttl_over_four_weeks_is_refused(editor, tenant, phones):
    response = editor.post(COMPOSE, form(tenant, _action="confirm", ttl_value="29", ttl_unit="86400"))

    assert b"at most 4 weeks" in response.content
    assert not Message.objects.exists()


def test_reserved_and_duplicate_data_keys_are_refused(editor, tenant, phones):
    response = editor.post(
        COMPOSE,
        form(
            tenant,
            _action="confirm",
            data_key=["google.x", "a", "a", "title"],
            data_value=["1", "2", "3", "4"],
        ),
    )

    page = response.content.decode()
    assert "reserved by FCM or Herald" in page and "appears twice" in page
    assert "set from the title, body and options" in page
    assert not Message.objects.exists()


def test_audiences_are_stored_as_the_api_stores_them(editor, tenant, phones):
    editor.post(
        COMPOSE,
        form(
            tenant,
            _action="confirm",
            audience="filter",
            platforms=["android", "ios"],
            countries="tr, de",
            languages="",
        ),
    )
    editor.post(
        COMPOSE,
        form(tenant, _action="confirm", title="Users", audience="users", app_user_ids="ayse\nbora, ayse"),
    )
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    editor.post(
        COMPOSE,
        form(
            tenant,
            _action="confirm",
            title="Topic",
            audience="topic",
            topic="/topics/news",
            when="later",
            schedule_at=f"{tomorrow}T10:00",
        ),
    )

    by_title = {m.title: m for m in Message.objects.all()}
    assert by_title["Your order is on its way"].audience_params == {
        "platforms": ["android", "ios"],
        "countries": ["TR", "DE"],
    }
    assert by_title["Users"].audience_params == {"app_user_ids": ["ayse", "bora"]}
    topic = by_title["Topic"]
    assert (topic.audience, topic.audience_params) == (Audience.TOPIC, {"topic": "news"})


def test_an_audience_needs_its_parameters(editor, tenant):
    response = editor.post(COMPOSE, form(tenant, _action="send", audience="tokens"))

    assert b"Required for this audience." in response.content


def test_duplicating_a_message_fills_the_composer_with_it(editor, tenant):
    message = make_message(
        tenant,
        title="Weekly summary",
        data={"screen": "stats"},
        audience="users",
        audience_params={"app_user_ids": ["ayse", "bora"]},
        ttl_seconds=7200,
    )

    page = editor.get(f"{COMPOSE}?from={message.pk}").content.decode()

    assert 'value="Weekly summary"' in page and 'value="screen"' in page and "ayse\nbora" in page
    assert 'value="2"' in page and '<option value="3600" selected>' in page


def test_another_tenants_message_cannot_be_duplicated(editor, other_tenant):
    message = make_message(other_tenant, title="Globex secret")

    assert editor.get(f"{COMPOSE}?from={message.pk}").status_code == 404


# --- The live audience size ------------------------------------------------------------------


def test_the_audience_size_counts_devices_that_would_get_it(editor, tenant, phones):
    everyone = editor.post(AUDIENCE, form(tenant)).json()
    ios = editor.post(AUDIENCE, form(tenant, audience="filter", platforms=["ios"])).json()
    germany = editor.post(AUDIENCE, form(tenant, audience="filter", countries="DE")).json()
    users = editor.post(AUDIENCE, form(tenant, audience="users", app_user_ids="ayse\ncem")).json()

    assert (everyone["size"], everyone["text"]) == (3, "3 devices will get it")
    assert (ios["size"], germany["size"], users["size"]) == (1, 1, 2)


def test_the_audience_size_of_a_topic_is_left_to_fcm(editor, tenant):
    answer = editor.post(AUDIENCE, form(tenant, audience="topic", topic="news")).json()

    assert answer["size"] is None and "cannot count" in answer["text"]


def test_the_audience_size_of_another_tenant_is_not_told(editor, other_tenant):
    make_device(other_tenant, "tok-globex-" + "g" * 20)

    answer = editor.post(AUDIENCE, form(other_tenant)).json()

    assert answer["size"] is None and not answer["ok"]


def test_the_audience_size_says_what_is_missing(editor, tenant):
    answer = editor.get(AUDIENCE, form(tenant, audience="filter", countries="XX")).json()

    assert not answer["ok"] and "XX" in answer["text"]


# --- Validate and test -------------------------------------------------------------------------


def test_validate_asks_fcm_and_says_it_accepts_the_message(editor, tenant, sandbox_credential):
    answer = editor.post(COMPOSE, form(tenant, _action="validate", _format="json")).json()

    assert answer["ok"] and answer["summary"] == "FCM accepts this message. Nothing was delivered."
    assert not SandboxMessage.objects.exists()


def test_validate_explains_a_missing_credential_in_plain_words(editor, tenant, settings, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    answer = editor.post(COMPOSE, form(tenant, _action="validate", _format="json")).json()

    assert not answer["ok"]
    assert any("Upload the service-account key under Firebase credentials" in d for d in answer["details"])


def test_validate_passes_fcms_own_objection_on(editor, tenant, sandbox_credential):
    answer = editor.post(
        COMPOSE,
        form(tenant, _action="validate", _format="json", audience="condition", condition="news in topics"),
    ).json()

    assert not answer["ok"] and answer["summary"] == "FCM would not accept this message."
    assert answer["details"][0].startswith("INVALID_ARGUMENT: FCM refused the message as malformed")


def test_validate_without_javascript_shows_the_answer_on_the_page(editor, tenant, sandbox_credential):
    response = editor.post(COMPOSE, form(tenant, _action="validate"))

    assert b"FCM accepts this message" in response.content


def test_a_test_push_goes_to_the_devices_of_one_app_user(editor, tenant, phones, sandbox_credential):
    answer = editor.post(COMPOSE, form(tenant, _action="test", _format="json", test_to="ayse")).json()

    assert answer["ok"] and answer["summary"] == "Test push sent to 2 of 2 device(s)."
    assert set(SandboxMessage.objects.values_list("target", flat=True)) == {phones[0].token, phones[1].token}
    assert not Message.objects.exists()  # a test is not a message: it counts nowhere


def test_a_test_push_goes_to_one_device_by_its_token(editor, tenant, phones, sandbox_credential):
    answer = editor.post(
        COMPOSE, form(tenant, _action="test", _format="json", test_to=phones[2].token)
    ).json()

    assert answer["ok"]
    assert list(SandboxMessage.objects.values_list("target", flat=True)) == [phones[2].token]


def test_a_test_push_skips_a_device_without_permission_and_says_why(
    editor, tenant, phones, sandbox_credential
):
    answer = editor.post(COMPOSE, form(tenant, _action="test", _format="json", test_to="cem")).json()

    assert not answer["ok"] and "has not allowed notifications" in answer["details"][0]


def test_a_test_push_to_an_uninstalled_app_deactivates_the_device(editor, tenant, sandbox_credential):
    gone = make_device(tenant, "sandbox-unregistered-" + "z" * 20, user="zed")

    answer = editor.post(COMPOSE, form(tenant, _action="test", _format="json", test_to="zed")).json()

    assert not answer["ok"] and "UNREGISTERED. The app was uninstalled" in answer["details"][0]
    assert not Device.objects.get(pk=gone.pk).is_active


def test_a_test_push_never_reaches_another_tenants_device(editor, tenant, other_tenant, sandbox_credential):
    theirs = make_device(other_tenant, "tok-globex-" + "g" * 20, user="ayse")

    answer = editor.post(COMPOSE, form(tenant, _action="test", _format="json", test_to=theirs.token)).json()

    assert not answer["ok"] and "has no device with that token or app user id" in answer["summary"]
    assert not SandboxMessage.objects.exists()


def test_a_test_push_needs_someone_to_send_to(editor, tenant):
    answer = editor.post(COMPOSE, form(tenant, _action="test", _format="json")).json()

    assert not answer["ok"] and answer["summary"] == "Enter an app user id or token to test."


def test_form_errors_come_back_as_json_for_the_page_script(editor, tenant):
    answer = editor.post(COMPOSE, form(tenant, _action="validate", _format="json", title="")).json()

    assert not answer["ok"] and answer["errors"] == {"title": ["This field is required."]}


def test_a_payload_too_large_for_fcm_is_refused(editor, tenant):
    response = editor.post(
        COMPOSE, form(tenant, _action="send", body="x" * 2000, data_key=["blob"], data_value=["y" * 3000])
    )

    assert b"FCM allows about 4,000" in response.content


def test_the_preview_has_android_ios_and_web(editor):
    page = editor.get(COMPOSE).content.decode()

    for platform in ("android", "ios", "web"):
        assert f'data-platform="{platform}"' in page
    assert json.loads(page.split('id="hd-tenant-names" type="application/json">')[1].split("</script>")[0])


def test_the_composer_starts_with_the_tenant_the_superuser_was_looking_at(superuser, tenant, other_tenant):
    # Acme sorts first; the superuser was looking at Globex.
    dashboard = superuser.get(f"/admin/?tenant={other_tenant.pk}").content.decode()
    listing = superuser.get(f"/admin/messaging/message/?tenant={other_tenant.pk}").content.decode()
    compose = f"/admin/messaging/message/compose/?tenant={other_tenant.pk}"

    page = superuser.get(compose).content.decode()

    assert f'href="{compose}"' in dashboard and f'href="{compose}"' in listing
    assert f'<option value="{other_tenant.pk}" selected>Globex (globex)</option>' in page
    assert f'<option value="{tenant.pk}">Acme (acme)</option>' in page


def test_the_composer_ignores_a_tenant_the_editor_may_not_send_for(editor, tenant, other_tenant):
    page = editor.get(f"/admin/messaging/message/compose/?tenant={other_tenant.pk}").content.decode()

    assert f'name="tenant" value="{tenant.pk}"' in page and "Globex" not in page
