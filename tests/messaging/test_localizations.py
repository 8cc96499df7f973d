"""Localizations: each device gets its user's language, else the tenant's default language."""

import json

import pytest
from django.db.models import Count
from rest_framework.test import APIClient

from messaging.models import Delivery, Message, MessageContent
from messaging.services import fan_out

TR = {"title": "İndirim", "body": "%50 indirim"}
DE = {
    "title": "Rabatt",
    "body": "50 % Rabatt",
    "image_url": "https://example.com/de.png",
    "click_link": "myshop://de/sale",
}


def send(server, **body):
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off", **body}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def delivered(message):
    """{token: language} for every delivery of the message."""
    return {d.device.token: d.language for d in message.deliveries.select_related("device")}


def titles(inbox):
    return {token: messages[-1]["data"]["title"] for token, messages in inbox().items()}


def test_each_device_gets_its_users_language_and_the_rest_the_tenants_default(
    sandbox, server, make_device, inbox
):
    make_device("tok-tr", user="ayse", language="tr")
    make_device("tok-de", user="jonas", language="de")
    make_device("tok-none", user="anon", language="")
    make_device("tok-fr", user="marie", language="fr")
    make_device("tok-en", user="john", language="en")

    message = send(server, localizations={"tr": TR, "de": DE})

    assert delivered(message) == {
        "tok-tr": "tr",
        "tok-de": "de",
        "tok-none": "en",
        "tok-fr": "en",
        "tok-en": "en",
    }
    assert titles(inbox) == {
        "tok-tr": "İndirim",
        "tok-de": "Rabatt",
        "tok-none": "Sale",
        "tok-fr": "Sale",
        "tok-en": "Sale",
    }
    de_push = inbox()["tok-de"][0]["data"]
    assert (de_push["body"], de_push["image"], de_push["click_link"]) == (
        "50 % Rabatt",
        "https://example.com/de.png",
        "myshop://de/sale",
    )
    assert message.language == "en"
    assert set(MessageContent.objects.filter(message=message).values_list("variant", "language")) == {
        (0, "tr"),
        (0, "de"),
    }


def test_a_tenant_writing_in_turkish_falls_back_to_turkish(sandbox, server, make_device, tenant, inbox):
    tenant.default_language = "tr"
    tenant.save()
    make_device("tok-en", user="john", language="en")
    make_device("tok-ja", user="kenji", language="ja")

    message = send(
        server, title="İndirim", body="%50", localizations={"en": {"title": "Sale", "body": "50%"}}
    )

    assert message.language == "tr"
    assert delivered(message) == {"tok-en": "en", "tok-ja": "tr"}
    assert titles(inbox) == {"tok-en": "Sale", "tok-ja": "İndirim"}


def test_fan_out_reads_the_users_language_in_the_chunk_query(
    server, make_device, settings, django_assert_max_num_queries
):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}  # no sending
    settings.FANOUT_CHUNK_SIZE = 50
    for i in range(120):
        make_device(f"tok-{i}", user=f"u{i}", language=["tr", "de", ""][i % 3])
    message = send(server, localizations={"tr": TR})

    # Per chunk of 50: the devices (with their users' languages; on PostgreSQL between a SET and
    # a RESET of the planner's settings), an INSERT with the count; plus a few for the message,
    # its content rows, its task slot, its tenant's queue rank and closing up. Not one query per
    # device.
    with django_assert_max_num_queries(19):
        fan_out(message_id=message.pk)

    counts = dict(Delivery.objects.filter(message=message).values_list("language").annotate(n=Count("pk")))
    assert counts == {"tr": 40, "en": 80}


def test_developer_push_takes_localizations_as_an_extension(sandbox, server, make_device, inbox):
    make_device("tok-tr", user="ayse", language="tr")
    make_device("tok-tr-2", user="ayse", language="tr")

    localizations = {"tr": {"title": "Kargoda", "body": "Bugün"}}
    response = server.post(
        "/developer/push",
        {"app_user_id": "ayse", "title": "Shipped", "body": "Today", "localizations": localizations},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert titles(inbox) == {"tok-tr": "Kargoda", "tok-tr-2": "Kargoda"}
    assert set(Delivery.objects.values_list("language", flat=True)) == {"tr"}


def test_message_detail_reports_sends_and_opens_per_language(sandbox, server, make_device, app_key, tenant):
    make_device("tok-tr", user="ayse", language="tr")
    make_device("tok-tr-2", user="mehmet", language="tr")
    make_device("tok-en", user="john", language="en")
    message = send(server, localizations={"tr": TR})
    opened = message.deliveries.get(device__token="tok-tr")
    assert (
        APIClient()
        .post(
            "/pushes/opened",
            {"tenant_id": tenant.tenant_id, "api_key": app_key, "tracking_token": opened.tracking_token},
            format="json",
        )
        .status_code
        == 200
    )

    body = server.get(f"/api/v1/messages/{message.pk}").json()

    assert body["language"] == "en"
    assert body["localizations"] == {"tr": {**TR, "image_url": "", "click_link": ""}}
    assert body["per_language"] == [
        {"language": "en", "sent": 1, "failed": 0, "opened": 0, "pending": 0, "open_rate": 0.0},
        {"language": "tr", "sent": 2, "failed": 0, "opened": 1, "pending": 0, "open_rate": 0.5},
    ]


@pytest.mark.parametrize(
    ("localizations", "field", "fragment"),
    [
        ({"xx": TR}, "localizations", "xx"),
        ({"TR": TR}, "localizations", "TR"),
        ({"en": TR}, "localizations", "default language"),
        ({"tr": {"title": "İndirim"}}, "localizations", "body"),
        ({"tr": {**TR, "subtitle": "x"}}, "localizations", "subtitle"),
        ({"tr": {**TR, "title": "x" * 201}}, "localizations", "200"),
        ({"tr": {**TR, "click_link": "javascript:alert(1)"}}, "localizations", "javascript"),
        ({"tr": {**TR, "image_url": "not a url"}}, "localizations", "URL"),
        ({"tr": {**TR, "title": "\ud800"}}, "localizations", "surrogate"),
        ({"tr": {**TR, "body": "ş" * 1990}}, "localizations", "bytes"),
        ({"tr": "İndirim"}, "localizations", "tr"),
        (["tr"], "localizations", "dictionary"),
        (
            {
                code: TR
                for code in [
                    "tr",
                    "de",
                    "fr",
                    "es",
                    "it",
                    "pt",
                    "nl",
                    "pl",
                    "ru",
                    "uk",
                    "ar",
                    "he",
                    "fa",
                    "hi",
                    "bn",
                    "ja",
                    "ko",
                    "zh",
                    "vi",
                    "th",
                    "id",
                    "ms",
                    "sv",
                    "no",
                    "da",
                    "fi",
                    "cs",
                    "sk",
                    "hu",
                    "ro",
                    "bg",
                    "el",
                ]
            },
            "localizations",
            "31",
        ),
    ],
)
def test_bad_localizations_are_refused_with_the_field_and_nothing_stored(
    server, localizations, field, fragment
):
    # Raw JSON: "\\ud800" travels as an escape, as a hostile client would send it.
    response = server.post(
        "/api/v1/messages",
        json.dumps({"title": "Sale", "body": "50% off", "localizations": localizations}),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["field"] == field
    assert fragment.lower() in (body["detail"] + str(body.get("errors"))).lower()
    assert not Message.objects.exists()


def test_localizations_with_a_topic_audience_are_refused(server):
    response = server.post(
        "/api/v1/messages",
        {
            "title": "Sale",
            "body": "50% off",
            "localizations": {"tr": TR},
            "audience": {"kind": "topic", "topic": "news"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "localizations"


def test_bad_localizations_on_developer_push_are_refused(server, make_device):
    make_device("tok-tr", user="ayse", language="tr")

    response = server.post(
        "/developer/push",
        {
            "app_user_id": "ayse",
            "title": "Shipped",
            "body": "Today",
            "localizations": {"tr": {"title": "Kargoda"}},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "localizations"
    assert not Message.objects.exists()
