"""The views read valid bodies by hand (devices/validation.py) and leave everything else to the
serializers: the hand-written reading must never accept what a serializer refuses, and must read
what it accepts exactly as the serializer does. Errors are then always the serializer's own."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import validation
from devices.serializers import EventSerializer, RefreshTokenSerializer
from tests.devices.conftest import EVENT

CREDENTIALS = {"tenant_id": "acme", "api_key": "hrld_app_x"}
MISSING = object()
CHECK = settings(
    max_examples=800, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from(["\x00", "\ud800", "a\udfffb", " "]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3) | st.just("\x00"), inner, max_size=3)
    ),
    max_leaves=8,
)
tricky_text = st.sampled_from(
    [
        "",
        " ",
        "\t",
        " x",
        "x ",
        "x\n",
        "\xa0x",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udc00",
        "é",
        "a" * 200,
        "a" * 201,
        "a" * 255,
        "a" * 256,
        "t" * 4096,
        "t" * 4097,
        "Europe/Istanbul",
        "europe/istanbul",
        "UTC",
        "Etc/GMT+3",
        "+03:00",
        "tr",
        "TR",
        "Tr",
        "tR",
        "xx",
        "tur",
        "\u212aa",
        "android",
        "ios",
        "web",
        "Android",
        "windows",
        "registration",
        "fid",
        "FID",
        "2026-11-23T10:15:00+03:00",
        "2026-11-23T10:15:00Z",
        "2026-11-23t10:15:00z",
        "2026-11-23T10:15:00.123456789+05:30",
        "2026-11-23T10:15:00",
        "2026-13-40T10:15:00Z",
        "2026-02-30T10:15:00Z",
        "2026-11-23 10:15:00+03:00",
        "2026-11-23T24:00:00Z",
    ]
)
any_value = st.one_of(
    tricky_text,
    st.text(max_size=6),
    json_scalars,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), json_values, max_size=3),
)


def mutations(valid: dict, extra: dict):
    """A valid body with up to three fields changed: to anything, to nothing, or to a field's own kind."""
    fields = sorted({*valid, *extra})
    values = {name: st.one_of(st.just(MISSING), any_value, extra.get(name, st.nothing())) for name in fields}
    changes = st.lists(st.sampled_from(fields), max_size=3, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: values[name] for name in names})
    )
    return changes.map(lambda changed: {**valid, **changed})


event_bodies = mutations(
    EVENT,
    {
        "params": st.dictionaries(st.text(max_size=3) | st.just("\x00"), json_values, max_size=4),
        "token_kind": st.sampled_from(["registration", "fid"]),
        "app_user_id": st.text(max_size=5),
    },
)
# Bodies of the right shape whose values vary within their fields' kinds: mostly valid ones.
times = [t for t in tricky_text.elements if t.startswith("2026")]
some_text = st.one_of(st.text(alphabet="abc", min_size=1, max_size=3), st.text(max_size=4))
event_bodies |= st.fixed_dictionaries(
    {
        "app_user_id": some_text,
        "event_name": some_text,
        "event_time": st.sampled_from(times),
        "device_token": some_text,
        "platform": st.sampled_from(["android", "ios", "web", "Web"]),
        "push_permission_granted": st.booleans(),
        "timezone": st.sampled_from(
            ["UTC", "Europe/Istanbul", "America/Argentina/Buenos_Aires", "utc", " UTC"]
        ),
        "language": st.sampled_from(["tr", "TR", "eN", "xx", " t"]),
        "country": st.sampled_from(["TR", "us", "Zz"]),
        "session_id": some_text,
        "params": st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    }
)
refresh_bodies = mutations(
    {"old_token": "old-token", "new_token": "new-token", "app_user_id": "dana"},
    {"platform": st.sampled_from(["ios", "web", "android"])},
)


def judged_by_serializer(serializer_class, body: dict) -> dict | None:
    serializer = serializer_class(data={**CREDENTIALS, **body})
    if not serializer.is_valid():
        return None
    data = dict(serializer.validated_data)
    data.pop("tenant_id"), data.pop("api_key")
    return data


def present(body: dict) -> dict:
    return {name: value for name, value in body.items() if value is not MISSING}


@pytest.mark.parametrize(
    ("bodies", "read_by_hand", "serializer_class"),
    [
        (event_bodies, validation.event_input, EventSerializer),
        (refresh_bodies, validation.refresh_input, RefreshTokenSerializer),
    ],
    ids=["events", "refresh-token"],
)
def test_a_body_read_by_hand_is_one_the_serializer_accepts_and_reads_the_same(
    bodies, read_by_hand, serializer_class
):
    @CHECK
    @given(bodies)
    def check(body):
        body = present(body)

        by_hand = read_by_hand({**CREDENTIALS, **body})

        if by_hand is not None:
            assert by_hand == judged_by_serializer(serializer_class, body)

    check()


@pytest.mark.parametrize(
    "body",
    [
        EVENT,
        {**EVENT, "app_user_id": "", "params": {}, "token_kind": "fid", "language": "TR", "country": "tr"},
        {name: value for name, value in EVENT.items() if name not in ("app_user_id", "params")},
        {
            **EVENT,
            "event_time": "2026-11-23T10:15:00.123456789+05:30",
            "params": {"a": [1, {"b": None}], "é": "ü"},
        },
    ],
)
def test_the_bodies_apps_send_are_read_by_hand(body):
    assert validation.event_input({**CREDENTIALS, **body}) == judged_by_serializer(EventSerializer, body)


def test_a_plain_refresh_body_is_read_by_hand():
    body = {"old_token": "a", "new_token": "b", "app_user_id": "dana", "platform": "web"}

    by_hand = validation.refresh_input({**CREDENTIALS, **body})

    assert by_hand == judged_by_serializer(RefreshTokenSerializer, body)
