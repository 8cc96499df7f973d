"""A tenant's Firebase service account: validating an upload, storing it, reading it back.

Herald authenticates to FCM HTTP v1 with OAuth 2.0 access tokens that it mints from
a service-account key (the JSON file from Firebase console > Project settings >
Service accounts > Generate new private key). This module knows what such a file
looks like and what people upload by mistake; ``messaging.fcm`` is what uses it.

A tenant without a stored credential falls back to Application Default Credentials:
the service-account file named by the ``GOOGLE_APPLICATION_CREDENTIALS`` environment
variable (the usual way to configure a single-tenant install). Only that file form of
ADC is supported, because Herald needs the key's project ID to address FCM.
"""

import json
import os
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tenants.encryption import encrypt, reencrypt
from tenants.models import FirebaseCredential, Tenant

# A real key file is about 2.3 KB; anything far larger is something else.
MAX_FILE_BYTES = 64 * 1024
ADC_ENVIRONMENT_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
# Where Google's service-account files send their assertions (the second is older keys').
GOOGLE_TOKEN_URIS = ("https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token")

WHERE_TO_GET_IT = (
    "Upload the service-account key instead: Firebase console > Project settings > "
    "Service accounts > Generate new private key (a JSON file with "
    '"type": "service_account").'
)


def token_uri_allowed(token_uri: object) -> bool:
    """Whether Herald may send a service account's signed JWT to this token endpoint.

    Only Google's two, exactly, and any the operator lists in FCM_ALLOWED_TOKEN_URIS (the
    sandbox's, in the demo and the tests). A service account is an upload, so its
    token_uri must not be able to aim Herald's processes at internal services.
    """
    return isinstance(token_uri, str) and (
        token_uri in GOOGLE_TOKEN_URIS or token_uri in settings.FCM_ALLOWED_TOKEN_URIS
    )


def token_uri_refusal(token_uri: object) -> str:
    """Why a service account's token_uri is refused, in words an admin can act on."""
    shown = repr(token_uri[:200]) if isinstance(token_uri, str) else "missing"
    return (
        f"token_uri {shown} is not Google's token endpoint. Herald sends service-account "
        f"assertions only to {', '.join(GOOGLE_TOKEN_URIS)} (or to URLs the operator adds to "
        "FCM_ALLOWED_TOKEN_URIS). Download an unedited key from Project settings > Service accounts."
    )


class InvalidServiceAccount(ValueError):
    """The upload is not a usable service-account key. The message says what it is instead."""

    def __init__(self, message: str, *, code: str = "invalid_service_account"):
        super().__init__(message)
        self.code = code


def parse_service_account(raw: bytes | str) -> dict:
    """Validate a service-account key file and return the fields Herald keeps.

    Accepts the file's bytes or text. Raises InvalidServiceAccount, with a message
    a person can act on, for anything else: the app's google-services.json, a legacy
    server key, a bare PEM key, another kind of Google credential, or a broken file.
    """
    if isinstance(raw, bytes):
        if len(raw) > MAX_FILE_BYTES:
            raise InvalidServiceAccount(
                f"The file is larger than {MAX_FILE_BYTES // 1024} KB, far too large for a "
                "service-account key. " + WHERE_TO_GET_IT,
                code="too_large",
            )
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidServiceAccount(
                "The file is not text (not UTF-8). " + WHERE_TO_GET_IT, code="not_json"
            ) from None
    text = raw.strip().lstrip("\ufeff")
    if len(text) > MAX_FILE_BYTES:
        raise InvalidServiceAccount(
            "The text is far too large for a service-account key. " + WHERE_TO_GET_IT,
            code="too_large",
        )
    if not text:
        raise InvalidServiceAccount("The file is empty. " + WHERE_TO_GET_IT, code="empty")
    if not text.startswith(("{", "[")):
        raise InvalidServiceAccount(_describe_non_json(text), code=_non_json_code(text))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidServiceAccount(
            f"The file is not valid JSON ({exc}). " + WHERE_TO_GET_IT, code="not_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidServiceAccount("The JSON is not an object. " + WHERE_TO_GET_IT, code="not_json")

    if "project_info" in data and "client" in data:
        raise InvalidServiceAccount(
            "This is google-services.json, the Android app's config file: it tells the app "
            "which Firebase project to register with, but cannot send messages. "
            "Upload the service-account key from Project settings > Service accounts "
            "(Generate new private key) instead.",
            code="google_services_json",
        )
    if "apiKey" in data and ("messagingSenderId" in data or "appId" in data):
        raise InvalidServiceAccount(
            "This is a Firebase web app config (apiKey, appId, messagingSenderId): it belongs "
            "in the web app and cannot send messages. " + WHERE_TO_GET_IT,
            code="web_app_config",
        )
    kind = data.get("type")
    if kind != "service_account":
        what = (
            f"a {kind!r} credential"
            if isinstance(kind, str) and kind
            else 'not a service-account key (no "type")'
        )
        raise InvalidServiceAccount(
            f'This is {what}; Herald needs a key of type "service_account". ' + WHERE_TO_GET_IT,
            code="wrong_type",
        )

    missing = [
        name
        for name in ("project_id", "client_email", "token_uri", "private_key")
        if not isinstance(data.get(name), str) or not data[name].strip()
    ]
    if missing:
        raise InvalidServiceAccount(
            f"The service-account key lacks {', '.join(missing)}. Was it edited? "
            "Download a fresh key from Project settings > Service accounts.",
            code="missing_fields",
        )
    if "@" not in data["client_email"]:
        raise InvalidServiceAccount(
            f"client_email {data['client_email']!r} is not an email address.", code="invalid_field"
        )
    token_uri = data["token_uri"].strip()
    parts = urlsplit(token_uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidServiceAccount(
            f"token_uri {token_uri[:200]!r} is not an http(s) URL.", code="invalid_field"
        )
    if not token_uri_allowed(token_uri):
        raise InvalidServiceAccount(token_uri_refusal(token_uri), code="token_uri_not_allowed")
    key_id = data.get("private_key_id") or ""
    if not isinstance(key_id, str):
        raise InvalidServiceAccount("private_key_id must be a string.", code="invalid_field")

    try:
        key = load_pem_private_key(data["private_key"].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidServiceAccount(
            f"private_key is not a usable PEM private key ({exc}). Was the file edited or "
            "truncated? Download a fresh key from Project settings > Service accounts.",
            code="invalid_private_key",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        # Google signs service-account assertions with RS256 only.
        raise InvalidServiceAccount(
            "private_key is not an RSA key; Google service-account keys are RSA.",
            code="invalid_private_key",
        )

    return {
        "type": "service_account",
        "project_id": data["project_id"].strip(),
        "private_key_id": key_id.strip(),
        "private_key": data["private_key"],
        "client_email": data["client_email"].strip(),
        "token_uri": token_uri,
    }


def _non_json_code(text: str) -> str:
    return "legacy_server_key" if _looks_like_server_key(text) else "not_json"


def _looks_like_server_key(text: str) -> bool:
    value = text.removeprefix("key=").strip()
    if " " in value or "\n" in value:
        return False
    # FCM legacy server keys ("AAAA…:APA91b…"), GCM-era API keys ("AIza…").
    return (":APA91" in value and value.startswith("AAAA")) or (value.startswith("AIza") and len(value) == 39)


def _describe_non_json(text: str) -> str:
    if _looks_like_server_key(text):
        return (
            "This is a legacy FCM server key. Google shut down the legacy HTTP and XMPP APIs "
            "that accepted server keys in 2024; FCM HTTP v1, which Herald uses, authenticates "
            "with a service account instead. " + WHERE_TO_GET_IT
        )
    if text.startswith("-----BEGIN"):
        return (
            "This is a bare PEM key (perhaps an APNs .p8 key or just the private_key part). "
            "Herald needs the whole service-account JSON file. " + WHERE_TO_GET_IT
        )
    if text.startswith("<") and ("GOOGLE_APP_ID" in text or "GCM_SENDER_ID" in text or "plist" in text):
        return (
            "This is GoogleService-Info.plist, the iOS app's config file: it cannot send "
            "messages. " + WHERE_TO_GET_IT
        )
    if text.isdigit():
        return "This looks like a sender ID (project number), not a credential. " + WHERE_TO_GET_IT
    return "The file is not JSON. " + WHERE_TO_GET_IT


def set_credentials(*, tenant: Tenant, raw: bytes | str, uploaded_by=None) -> FirebaseCredential:
    """Validate a service-account key and make it the tenant's credential.

    Replaces any previous credential of the tenant (and forgets its last check).
    The private key is encrypted before it reaches the database.
    """
    info = parse_service_account(raw)
    with transaction.atomic():
        credential, _ = FirebaseCredential.objects.select_for_update().update_or_create(
            tenant=tenant,
            defaults={
                "project_id": info["project_id"],
                "client_email": info["client_email"],
                "private_key_id": info["private_key_id"],
                "token_uri": info["token_uri"],
                "encrypted_private_key": encrypt(info["private_key"]),
                "uploaded_at": timezone.now(),
                "uploaded_by": uploaded_by,
                "last_checked_at": None,
                "last_check_ok": None,
                "last_check_message": "",
            },
        )
    return credential


def application_default_service_account() -> dict | None:
    """The service account named by GOOGLE_APPLICATION_CREDENTIALS, or None when unset.

    Raises InvalidServiceAccount (naming the file) when the variable is set but the
    file is missing or not a service-account key.
    """
    path = os.environ.get(ADC_ENVIRONMENT_VARIABLE, "").strip()
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidServiceAccount(
            f"{ADC_ENVIRONMENT_VARIABLE}={path} cannot be read: {exc.strerror}.",
            code="adc_unreadable",
        ) from None
    try:
        return parse_service_account(raw)
    except InvalidServiceAccount as exc:
        raise InvalidServiceAccount(f"{ADC_ENVIRONMENT_VARIABLE}={path}: {exc}", code=exc.code) from None


def reencrypt_credentials() -> int:
    """Re-encrypt every stored private key with the current key (after a key rotation)."""
    count = 0
    for pk in FirebaseCredential.objects.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            credential = FirebaseCredential.objects.select_for_update().get(pk=pk)
            credential.encrypted_private_key = reencrypt(credential.encrypted_private_key)
            credential.save(update_fields=["encrypted_private_key"])
        count += 1
    return count
