"""Reading a valid /events or /devices/refresh-token body without building a serializer.

A DRF serializer deep-copies its fields and runs a chain of validators per field on every
request: on /events that was a third of the CPU left once the key lookup was cached and
the writes became one statement. Nearly every body apps send is valid, so these
functions read it by hand, with the serializers' own rules (their code lists, their time
parser), and answer None for anything they do not accept; the view then runs the
serializer, which decides and words the error. The errors therefore stay the
serializer's, and these functions need only never be more lenient than the serializers
and read a body as they do: tests/devices/test_fast_validation.py holds them to that.
"""

from rest_framework.exceptions import ValidationError

from api.fields import RFC3339DateTimeField
from devices.models import MAX_TOKEN_LENGTH, Device, Platform
from tenants.codes import COUNTRIES, LANGUAGES, time_zones

PLATFORMS = frozenset(Platform.values)
TOKEN_KINDS = frozenset(Device.TokenKind.values)
_event_time = RFC3339DateTimeField()


def _storable(value: str) -> bool:
    """No U+0000 and no lone surrogate: what DRF's CharField validators refuse."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value, *, max_length: int, blank: bool = False, trim: bool = True) -> str | None:
    """A CharField's value, or None where the field would refuse it or change it (trim)."""
    if not isinstance(value, str) or len(value) > max_length:
        return None
    if not value:
        return value if blank else None
    if trim and value != value.strip():
        return None
    return value if _storable(value) else None


def _params(value) -> dict | None:
    """Event params (a DictField of JSONFields), when every value is a plain JSON value."""
    if not isinstance(value, dict):
        return None
    stack = list(value.values())
    if None in stack:  # the serializer decides about nulls
        return None
    for key in value:
        if not _storable(key):
            return None
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                return None
        elif isinstance(item, dict):
            for key in item:
                if not _storable(key):
                    return None
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None and not isinstance(item, (bool, int, float)):
            return None
    return value


def _app_user_id(value) -> str | None:
    return _text(value, max_length=255, blank=True)


def _platform(value) -> str | None:
    return value if isinstance(value, str) and value in PLATFORMS else None


def _optional(data: dict, fields: dict, name: str, read) -> bool:
    """Put an optional field, when sent, into `fields`; False when it is sent and not accepted."""
    if name not in data:
        return True
    value = read(data[name])
    if value is None:
        return False
    fields[name] = value
    return True


def event_input(data: dict) -> dict | None:
    """The validated fields of a POST /events body (as EventSerializer gives them, without the
    credentials, which authentication has checked), or None: then the serializer must judge it."""
    try:
        event_time = data["event_time"]
        if not isinstance(event_time, str):
            return None
        event_time = _event_time.to_internal_value(event_time)
    except (KeyError, ValidationError):  # missing, or not RFC 3339: the serializer says which
        return None
    fields = {
        "event_name": _text(data.get("event_name"), max_length=200),
        "device_token": _text(data.get("device_token"), max_length=MAX_TOKEN_LENGTH, trim=False),
        "session_id": _text(data.get("session_id"), max_length=255),
        "timezone": data.get("timezone"),
        "platform": data.get("platform"),
        "push_permission_granted": data.get("push_permission_granted"),
        "language": data.get("language"),
        "country": data.get("country"),
    }
    if None in fields.values():
        return None
    if not isinstance(fields["timezone"], str) or fields["timezone"] not in time_zones():
        return None
    if not isinstance(fields["platform"], str) or fields["platform"] not in PLATFORMS:
        return None
    if not isinstance(fields["push_permission_granted"], bool):
        return None
    language, country = fields["language"], fields["country"]
    if not isinstance(language, str) or len(language) != 2 or language.lower() not in LANGUAGES:
        return None
    if not isinstance(country, str) or len(country) != 2 or country.upper() not in COUNTRIES:
        return None
    fields["language"], fields["country"] = language.lower(), country.upper()
    fields["event_time"] = event_time

    for name, read in (("app_user_id", _app_user_id), ("params", _params)):
        if not _optional(data, fields, name, read):
            return None
    token_kind = data.get("token_kind", Device.TokenKind.REGISTRATION)
    if not isinstance(token_kind, str) or token_kind not in TOKEN_KINDS:
        return None
    fields["token_kind"] = token_kind
    return fields


def refresh_input(data: dict) -> dict | None:
    """The validated fields of a POST /devices/refresh-token body (as RefreshTokenSerializer gives
    them, without the credentials), or None: then the serializer must judge the body."""
    fields = {
        "old_token": _text(data.get("old_token"), max_length=MAX_TOKEN_LENGTH, trim=False),
        "new_token": _text(data.get("new_token"), max_length=MAX_TOKEN_LENGTH, trim=False),
    }
    if None in fields.values():
        return None
    for name, read in (("app_user_id", _app_user_id), ("platform", _platform)):
        if not _optional(data, fields, name, read):
            return None
    return fields
