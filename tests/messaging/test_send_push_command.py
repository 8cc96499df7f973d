"""manage.py send_push: an operator's way to send, validated like the API."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Message


def test_send_push_sends_to_the_audience_through_fcm(sandbox, make_device, inbox):
    make_device("tok-a", user="u1")
    make_device("tok-b", user="u2")
    out = StringIO()

    call_command(
        "send_push",
        "acme",
        "--title",
        "Ops",
        "--body",
        "Maintenance tonight",
        "--audience",
        '{"kind": "users", "app_user_ids": ["u2"]}',
        stdout=out,
    )

    message = Message.objects.get()
    assert (message.source, message.status, message.sent_count) == ("command", "completed", 1)
    assert list(inbox()) == ["tok-b"]
    assert f"Message {message.pk}" in out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["--audience", "{not json"],
        ["--priority", "12"],
        ["--data", '{"n": 1}'],
    ],
)
def test_send_push_rejects_bad_input(tenant, args):
    with pytest.raises(CommandError):
        call_command("send_push", "acme", "--title", "t", "--body", "b", *args)
    assert Message.objects.count() == 0
