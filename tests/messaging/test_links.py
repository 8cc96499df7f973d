"""A push's click link may be an app's deep link (myshop://sale/flash), never a link that
runs code or reads files; the composer, the API and the model apply the same rule."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from messaging.models import Message
from tests.staff import make_device

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("immediate_tasks")]
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
COMPOSE = "/admin/messaging/message/compose/"
LATER = (timezone.now() + timedelta(days=2)).isoformat()

ACCEPTED = [
    "myshop://sale/flash",
    "myapp://open?item=42&ref=push",
    "intent://scan/#Intent;scheme=zxing;end",
    "https://example.com/sale?utm_source=push",
    "http://example.com/",
    "fb-messenger://threads",
]
REFUSED = {
    "javascript:alert(document.cookie)": "javascript:",
    "JavaScript:alert(1)": "javascript:",
    "data:text/html;base64,PHNjcmlwdD4=": "data:",
    "vbscript:msgbox(1)": "vbscript:",
    "file:///etc/passwd": "file:",
    "java\tscript:alert(1)": "spaces or control characters",
    "myshop://sale flash": "spaces or control characters",
    "sale/flash": "full link with its scheme",
    "//evil.example/": "full link with its scheme",
    "myshop:": "full link with its scheme",
    "https://": "valid http(s) URL",
}


def compose_form(tenant, **fields):
    return {
        "tenant": tenant.pk,
        "title": "Flash sale",
        "body": "Only until midnight.",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        **fields,
    }


@pytest.mark.parametrize("link", ACCEPTED)
def test_the_api_accepts_deep_links_and_web_links(server, link):
    response = server.post(
        "/api/v1/messages",
        {"title": "Sale", "body": "Today only", "schedule_at": LATER, "click_link": link},
        format="json",
    )

    assert response.status_code == 202, response.json()
    assert response.json()["click_link"] == link
    assert Message.objects.get().click_link == link


@pytest.mark.parametrize("link, reason", REFUSED.items())
def test_the_api_refuses_links_that_run_code_or_are_not_links(server, link, reason):
    response = server.post(
        "/api/v1/messages",
        {"title": "Sale", "body": "Today only", "schedule_at": LATER, "click_link": link},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "click_link"
    assert reason in response.json()["detail"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("link", ACCEPTED)
def test_the_composer_sends_a_push_with_a_deep_link(editor, tenant, link):
    make_device(tenant, "tok-android-" + "a" * 20)

    response = editor.post(COMPOSE, compose_form(tenant, click_link=link, _action="confirm"))

    assert response.status_code == 302
    assert Message.objects.get().click_link == link


@pytest.mark.parametrize("link, reason", REFUSED.items())
def test_the_composer_names_the_link_field_when_it_refuses_a_link(editor, tenant, link, reason):
    answer = editor.post(
        COMPOSE, compose_form(tenant, click_link=link, _action="send", _format="json")
    ).json()

    assert answer["ok"] is False
    assert list(answer["errors"]) == ["click_link"]
    assert reason in answer["errors"]["click_link"][0]


@pytest.mark.parametrize("link, reason", REFUSED.items())
def test_the_model_refuses_the_same_links(tenant, link, reason):
    message = Message(tenant=tenant, title="Sale", body="Today only", click_link=link)

    with pytest.raises(ValidationError) as refused:
        message.full_clean()
    assert reason in str(refused.value.message_dict["click_link"])
