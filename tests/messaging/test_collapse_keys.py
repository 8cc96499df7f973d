"""Every delivery carries a collapse key derived from its tracking token (Android collapse_key,
APNs apns-collapse-id, Web Push Topic), so a delivery sent again after a crash replaces its
first copy on the device instead of showing twice."""

import re

import pytest

from fcm_sandbox import schema
from messaging import fcm
from messaging.models import Delivery
from messaging.services import MessageInput, create_message

TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def test_each_delivery_collapses_under_its_own_tracking_token(sandbox, tenant, make_device, inbox):
    for i, platform in enumerate(("android", "ios", "web")):
        make_device(f"tok-{platform}", user=f"u{i}", platform=platform)

    create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))

    for delivery in Delivery.objects.select_related("device"):
        [received] = inbox()[delivery.device.token]
        token = delivery.tracking_token
        assert received["android"]["collapseKey"] == token
        assert received["apns"]["headers"]["apns-collapse-id"] == token
        assert received["webpush"]["headers"]["Topic"] == token
        assert received["data"]["tracking_token"] == token


def test_a_messages_own_collapse_key_is_kept(sandbox, tenant, make_device, inbox):
    make_device("tok-1")

    create_message(
        tenant=tenant, spec=MessageInput(title="Hi", body="There", options={"collapse_key": "sale"})
    )

    [received] = inbox()["tok-1"]
    assert received["android"]["collapseKey"] == "sale"
    assert received["apns"]["headers"]["apns-collapse-id"] == "sale"
    assert received["webpush"]["headers"]["Topic"] == "sale"


@pytest.mark.parametrize("key", ["a" * 65, "é" * 40, "summer sale / 2026!", "x" * 33])
def test_a_collapse_key_that_does_not_fit_apns_or_web_push_is_replaced_by_a_digest(key):
    message = fcm.with_collapse_key(
        fcm.build_message(target=fcm.FcmTarget(token="t"), title="a", body="b", data={}), key
    )

    assert message["android"]["collapse_key"] == key
    assert len(message["apns"]["headers"]["apns-collapse-id"].encode()) <= 64
    assert TOPIC.match(message["webpush"]["headers"]["Topic"])
    schema.check_message(schema.parse_send_request({"message": message})[0])  # the sandbox takes it


@pytest.mark.parametrize(
    ("config", "header", "value"),
    [
        ("apns", "apns-collapse-id", "a" * 65),
        ("webpush", "Topic", "not a topic"),
        ("webpush", "Topic", "a" * 33),
    ],
)
def test_the_sandbox_refuses_collapse_headers_apns_or_web_push_would_refuse(config, header, value):
    message = {"token": "t", config: {"headers": {header: value}}}

    with pytest.raises(schema.MessageError):
        schema.check_message(schema.parse_send_request({"message": message})[0])
