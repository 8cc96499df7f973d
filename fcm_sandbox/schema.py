"""Checking a send request the way FCM does, from Google's own discovery document.

``fcm.v1.json`` beside this file is the FCM HTTP v1 discovery document (revision
20261023), copied byte for byte from google-api-python-client 2.202.0. Every field,
type and enum the sandbox accepts comes from it, so a message the sandbox accepts is
one the real API's schema accepts.

Two kinds of failure, as on the real API:

* ``PayloadError``: the JSON does not fit the proto schema (unknown field, wrong type,
  two targets). Google answers these from its JSON parser, with a ``BadRequest``
  detail and no FCM errorCode.
* ``MessageError``: a well-formed message FCM refuses (no target, reserved data key,
  payload over 4096 bytes). These carry ``errorCode: INVALID_ARGUMENT``.
"""

import functools
import json
import re
from pathlib import Path

DISCOVERY_DOCUMENT = Path(__file__).with_name("fcm.v1.json")

TARGETS = ("token", "fid", "topic", "condition")
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_SECONDS = 28 * 24 * 3600

_DURATION = re.compile(r"^(-?)(\d{1,12})(\.\d{1,9})?s$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_TOPIC = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,900}$")
_ANALYTICS_LABEL = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,50}$")
_CONDITION_TOPIC = re.compile(r"'([^']*)'\s+in\s+topics")
_WEBPUSH_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # RFC 8030, section 5.4
_CONDITION = re.compile(r"^(\s|\(|\)|!|&&|\|\||'[a-zA-Z0-9\-_.~%]+'\s+in\s+topics)+$")
# FCM reserves these data keys for itself.
_RESERVED_DATA_KEY = re.compile(r"^(from|message_type|notification|google.*|gcm.*)$", re.IGNORECASE)

_INT32 = (-(2**31), 2**31 - 1)


class PayloadError(Exception):
    """The body does not parse as a SendMessageRequest. ``violations`` are (field, text)."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = violations
        super().__init__("\n".join(text for _, text in violations))


class MessageError(Exception):
    """FCM's own INVALID_ARGUMENT: a parsable message that cannot be sent."""

    def __init__(self, message: str, *, field: str = "message"):
        super().__init__(message)
        self.field = field


@functools.cache
def discovery() -> dict:
    return json.loads(DISCOVERY_DOCUMENT.read_bytes())


def schemas() -> dict:
    return discovery()["schemas"]


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def parse_send_request(body: object) -> tuple[dict, bool]:
    """Check a decoded request body; return (message with camelCase keys, validate_only).

    Raises PayloadError or MessageError as the real API would.
    """
    violations: list[tuple[str, str]] = []
    request = _object(body, "SendMessageRequest", "", violations)
    if violations:
        raise PayloadError(violations)
    message = request.get("message")
    if message is None:
        raise MessageError("Request contains an invalid argument: message is required.")
    check_message(message)
    return message, bool(request.get("validateOnly", False))


# --- The proto3 JSON mapping, driven by the discovery document ------------------------


def _at(path: str) -> str:
    return f" at '{path}'" if path else ""


def _object(value, schema_name: str, path: str, violations: list) -> dict:
    """Validate a JSON object against a named schema; return it with camelCase keys."""
    schema = schemas()[schema_name]
    if not isinstance(value, dict):
        violations.append((path, f"Invalid value{_at(path)} ({_type_name(schema_name)}), {_show(value)}"))
        return {}
    properties = schema.get("properties", {})
    result: dict = {}
    seen: dict[str, str] = {}
    target_set: str | None = None
    for key, item in value.items():
        name = _property_name(key, properties)
        if name is None:
            violations.append(
                (path, f'Invalid JSON payload received. Unknown name "{key}"{_at(path)}: Cannot find field.')
            )
            continue
        child_path = f"{path}.{key}" if path else key
        if name in seen:
            violations.append(
                (
                    child_path,
                    f'Invalid JSON payload received. Duplicate value for field "{key}"'
                    f'{_at(path)}: already set as "{seen[name]}".',
                )
            )
            continue
        seen[name] = key
        if item is None:
            continue  # proto3 JSON: null means "not set"
        if schema_name == "Message" and name in TARGETS:
            if target_set is not None:
                violations.append(
                    (
                        child_path,
                        "Invalid JSON payload received. Oneof field 'target' is already "
                        f"set. Cannot set '{key}'",
                    )
                )
                continue
            target_set = name
        result[name] = _value(item, properties[name], child_path, violations)
    return result


def _property_name(key: str, properties: dict) -> str | None:
    """The camelCase name a key stands for: its json_name or its original proto name."""
    if key in properties:
        return key
    camel = to_camel(key)
    if camel != key and camel in properties and to_snake(camel) == key:
        return camel
    return None


def _value(value, spec: dict, path: str, violations: list):
    if "$ref" in spec:
        return _object(value, spec["$ref"], path, violations)
    kind = spec.get("type")
    if kind == "any":
        return value
    if kind == "object":
        if not isinstance(value, dict):
            violations.append((path, f"Invalid value at '{path}' (map), {_show(value)}"))
            return {}
        entry = spec.get("additionalProperties", {"type": "any"})
        result = {}
        for index, (key, item) in enumerate(value.items()):
            if item is None and entry.get("type") != "any":
                violations.append(
                    (f"{path}[{index}].value", f"Invalid value at '{path}[{index}].value', null")
                )
                continue
            result[key] = _value(item, entry, f"{path}[{index}].value", violations)
        return result
    if kind == "array":
        if not isinstance(value, list):
            violations.append((path, f"Invalid value at '{path}' (repeated), {_show(value)}"))
            return []
        return [
            _value(item, spec.get("items", {"type": "any"}), f"{path}[{i}]", violations)
            for i, item in enumerate(value)
        ]
    if kind == "string":
        return _string(value, spec, path, violations)
    if kind == "boolean":
        if not isinstance(value, bool):
            violations.append((path, f"Invalid value at '{path}' (TYPE_BOOL), {_show(value)}"))
        return value
    if kind == "integer":
        number = value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            number = int(value)  # proto3 JSON accepts integers as strings too
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or not _INT32[0] <= number <= _INT32[1]:
            violations.append((path, f"Invalid value at '{path}' (TYPE_INT32), {_show(value)}"))
        return number
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value not in ("NaN", "Infinity", "-Infinity"):
                violations.append((path, f"Invalid value at '{path}' (TYPE_FLOAT), {_show(value)}"))
        return value
    return value


def _string(value, spec: dict, path: str, violations: list):
    enum = spec.get("enum")
    if enum:
        if isinstance(value, str) and value in enum:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(enum):
            return enum[value]  # proto3 JSON accepts an enum's number
        violations.append((path, f"Invalid value at '{path}' (TYPE_ENUM), {_show(value)}"))
        return value
    if not isinstance(value, str):
        violations.append((path, f"Invalid value at '{path}' (TYPE_STRING), {_show(value)}"))
        return value
    fmt = spec.get("format")
    if fmt == "google-duration" and not _DURATION.match(value):
        violations.append(
            (
                path,
                f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Duration), "
                f"Field '{path}', Illegal duration format; duration must end with 's'",
            )
        )
    elif fmt == "google-datetime" and not _DATETIME.match(value):
        violations.append(
            (
                path,
                f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Timestamp), "
                f"Field '{path}', Invalid time format: {value}",
            )
        )
    return value


def _type_name(schema_name: str) -> str:
    if schema_name == "Color":
        return "type.googleapis.com/google.type.Color"
    return f"type.googleapis.com/google.firebase.fcm.v1.{schema_name}"


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False)[:200]


# --- What FCM refuses in a well-formed message -----------------------------------------


def check_message(message: dict) -> None:
    """FCM's rules beyond the schema. ``message`` has camelCase keys (parse first)."""
    targets = [name for name in TARGETS if name in message]
    if not targets:
        raise MessageError("Recipient of the message is not set.")
    target = targets[0]
    value = message[target]
    if target in ("token", "fid") and not value.strip():
        raise MessageError(
            "The registration token is not a valid FCM registration token", field=f"message.{target}"
        )
    if target == "topic" and not _TOPIC.match(value):
        raise MessageError(f"Invalid topic name {value!r}.", field="message.topic")
    if target == "condition":
        topics = _CONDITION_TOPIC.findall(value)
        if not topics or not _CONDITION.match(value) or len(topics) > 5:
            raise MessageError(f"Invalid condition expression {value!r}.", field="message.condition")

    if "android" in message and "androidV2" in message:
        raise MessageError(
            "android and android_v2 cannot be set at the same time; send one of them.",
            field="message.android_v2",
        )

    for where, data in _data_maps(message):
        for key in data:
            if _RESERVED_DATA_KEY.match(key):
                raise MessageError(f"Invalid data payload key: {key!r} is reserved.", field=where)

    size = payload_size(message)
    if size > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"Message is too big: the payload is {size} bytes, the limit is {MAX_PAYLOAD_BYTES}.",
        )
    aps_payload = (message.get("apns") or {}).get("payload")
    if aps_payload is not None:
        aps_size = len(json.dumps(aps_payload, separators=(",", ":"), ensure_ascii=False).encode())
        if aps_size > MAX_PAYLOAD_BYTES:
            raise MessageError(
                f"APNs payload is too big: {aps_size} bytes, the limit is {MAX_PAYLOAD_BYTES}.",
                field="message.apns.payload",
            )

    for config in ("android", "androidV2"):
        ttl = (message.get(config) or {}).get("ttl")
        if ttl is not None:
            sign, whole, _ = _DURATION.match(ttl).groups()
            if sign or int(whole) > MAX_TTL_SECONDS:
                raise MessageError(
                    f"TTL must be between 0 and 4 weeks, not {ttl}.", field=f"message.{config}.ttl"
                )

    labels = [
        ("message.fcm_options.analytics_label", (message.get("fcmOptions") or {}).get("analyticsLabel")),
        (
            "message.android.fcm_options.analytics_label",
            ((message.get("android") or {}).get("fcmOptions") or {}).get("analyticsLabel"),
        ),
        (
            "message.apns.fcm_options.analytics_label",
            ((message.get("apns") or {}).get("fcmOptions") or {}).get("analyticsLabel"),
        ),
        (
            "message.webpush.fcm_options.analytics_label",
            ((message.get("webpush") or {}).get("fcmOptions") or {}).get("analyticsLabel"),
        ),
    ]
    for field, label in labels:
        if label is not None and not _ANALYTICS_LABEL.match(label):
            raise MessageError(f"Analytics label {label!r} is invalid.", field=field)

    # What APNs and the Web Push services refuse, and FCM passes back as INVALID_ARGUMENT.
    collapse_id = ((message.get("apns") or {}).get("headers") or {}).get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > 64:
        raise MessageError("apns-collapse-id must be at most 64 bytes.", field="message.apns.headers")
    topic = ((message.get("webpush") or {}).get("headers") or {}).get("Topic")
    if topic is not None and not _WEBPUSH_TOPIC.match(topic):
        raise MessageError(
            "The Web Push Topic header is at most 32 characters of the URL-safe base64 alphabet.",
            field="message.webpush.headers",
        )

    link = ((message.get("webpush") or {}).get("fcmOptions") or {}).get("link")
    if link is not None and not link.startswith("https://"):
        raise MessageError("The link must be an HTTPS URL.", field="message.webpush.fcm_options.link")


def _data_maps(message: dict):
    yield "message.data", message.get("data") or {}
    for config in ("android", "androidV2", "webpush"):
        yield f"message.{config}.data", (message.get(config) or {}).get("data") or {}


def payload_size(message: dict) -> int:
    """Bytes FCM counts against the 4096 limit: data keys and values plus the notification."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in (message.get("data") or {}).items())
    notification = message.get("notification") or {}
    size += sum(len(str(notification.get(k, "")).encode()) for k in ("title", "body", "image"))
    return size
