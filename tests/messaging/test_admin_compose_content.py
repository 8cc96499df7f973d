"""The composer's languages and variants: checked by the API's rules, stored as the API stores them."""

import json

import pytest

from messaging.content import variants_of
from messaging.models import AbTest, Message

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
COMPOSE = "/admin/messaging/message/compose/"


def form(tenant, doc, **fields):
    return {
        "tenant": tenant.pk,
        "title": "Sale",
        "body": "50% off",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        "content_doc": json.dumps(doc),
        "_action": "draft",
        **fields,
    }


def test_a_draft_keeps_its_languages_variants_and_ab_settings(editor, tenant):
    doc = {
        "localizations": {"tr": {"title": "İndirim", "body": "%50"}},
        "variant_mode": "ab_test",
        "variants": [
            {"title": "Sale B", "body": "Half off", "localizations": {"tr": {"title": "B", "body": "b"}}}
        ],
        "ab_test": {
            "test_percent": 30,
            "wait_seconds": 1800,
            "metric": "open_rate",
            "min_opens": 5,
            "fallback_variant": 1,
        },
    }

    response = editor.post(COMPOSE, form(tenant, doc))

    assert response.status_code == 302
    message = Message.objects.get()
    composed = variants_of(message)
    assert [v.content.title for v in composed] == ["Sale", "Sale B"]
    assert composed[0].localizations["tr"].title == "İndirim" and composed[1].localizations["tr"].title == "B"
    ab = AbTest.objects.get(message=message)
    assert (ab.test_percent, ab.wait_seconds, ab.min_opens, ab.fallback_variant) == (30, 1800, 5, 1)
    # Editing the draft starts from the same document.
    page = editor.get(f"{COMPOSE}?draft={message.pk}").content.decode()
    assert "Sale B" in page and "İndirim" in page


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"localizations": {"xx": {"title": "a", "body": "b"}}}, "xx"),
        ({"localizations": {"en": {"title": "a", "body": "b"}}}, "default language"),
        ({"localizations": {"tr": {"title": "", "body": "b"}}}, "title"),
        (
            {
                "variants": [{"title": "B", "body": "b"}],
                "variant_mode": "ab_test",
                "ab_test": {"test_percent": 0},
            },
            "test_percent",
        ),
        ({"variants": [{"title": "B", "body": "b", "click_link": "javascript:alert(1)"}]}, "javascript"),
    ],
)
def test_the_composer_refuses_what_the_api_refuses_and_stores_nothing(editor, tenant, doc, fragment):
    response = editor.post(COMPOSE, form(tenant, doc, _action="validate", _format="json"))

    errors = response.json()["errors"]
    assert fragment.lower() in " ".join(errors["content_doc"]).lower()
    assert not Message.objects.exists()
