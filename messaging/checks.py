"""The composer's checks: have FCM validate a composed push, or send it to a test device.

Neither creates a Message: a test push or a validation is a question asked of FCM
before the real send, and must not count in the tenant's statistics.
"""

from dataclasses import dataclass, field

from devices.models import Device, hash_token
from messaging import fcm
from messaging.models import Audience
from messaging.services import MessageInput, audience_target, client_for_tenant, device_target, fcm_message
from tenants.models import Tenant

# At most this many devices of one app user get a test push.
TEST_PUSH_MAX_DEVICES = 5
# Where a validation is addressed when the audience is not a topic or a condition: with
# validate_only nobody receives it, and a topic cannot be a dead token that would make a
# fine message look broken.
VALIDATION_TOPIC = "herald-validate"

EXPLANATIONS = {
    fcm.UNREGISTERED: "The app was uninstalled, or the token expired or was replaced. Herald stopped "
    "targeting the device.",
    fcm.SENDER_ID_MISMATCH: "The token belongs to another Firebase project than this tenant's credential. "
    "Herald stopped targeting the device.",
    fcm.INVALID_ARGUMENT: "FCM refused the message as malformed, or the token is not a valid FCM token.",
    fcm.QUOTA_EXCEEDED: "Too many messages too fast, for the project or for this one device; Herald "
    "retried later.",
    fcm.UNAVAILABLE: "FCM was overloaded or down; Herald retried with backoff until the message expired.",
    fcm.INTERNAL: "FCM had an internal error; Herald retried with backoff until the message expired.",
    fcm.THIRD_PARTY_AUTH_ERROR: "Apple (APNs) or the browser's push service refused FCM's credentials: "
    "check the APNs key or web push certificate in the Firebase console.",
    fcm.UNAUTHENTICATED: "Google refused the service-account key. Upload a new key under Firebase "
    "credentials.",
    fcm.PERMISSION_DENIED: "The service account may not send for this project, or the Firebase Cloud "
    "Messaging API is disabled for it.",
    fcm.NOT_FOUND: "FCM does not know the project: check the project ID of the Firebase credential.",
    fcm.TIMEOUT: "FCM did not answer in time.",
    fcm.CONNECTION_ERROR: "Herald could not reach FCM (network or DNS problem).",
    fcm.CONFIGURATION: "This tenant has no usable Firebase credential. Upload the service-account key "
    "under Firebase credentials.",
    fcm.CANCELLED: "The message was cancelled before this device's turn.",
    fcm.DEVICE_GONE: "The device was deleted or merged into another before its turn.",
}


def explain_fcm_error(code: str) -> str:
    """A sentence that tells staff what an FCM error code means for them."""
    return EXPLANATIONS.get(code, "FCM refused the message; the details below say why.")


@dataclass
class FcmCheck:
    """The outcome of a validation or a test push, in plain words."""

    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"ok": self.ok, "summary": self.summary, "details": self.details}


def _error_check(error: fcm.FcmError, summary: str) -> FcmCheck:
    details = [f"{error.code}: {explain_fcm_error(error.code)}"]
    if error.detail:
        details.append(f"FCM said: {error.detail}")
    return FcmCheck(ok=False, summary=summary, details=details)


def validate_message(*, tenant: Tenant, spec: MessageInput) -> FcmCheck:
    """Have FCM check a composed push (validate_only): nothing is delivered."""
    if spec.audience in (Audience.TOPIC, Audience.CONDITION):
        target = audience_target(audience=spec.audience, params=spec.audience_params)
    else:
        target = fcm.FcmTarget(topic=VALIDATION_TOPIC)
    try:
        message = fcm_message(push=spec, target=target)
        client_for_tenant(tenant).send(message, validate_only=True)
    except (ValueError, TypeError) as exc:
        return FcmCheck(ok=False, summary="Herald cannot build this message.", details=[str(exc)])
    except fcm.FcmError as error:
        return _error_check(error, "FCM would not accept this message.")
    return FcmCheck(ok=True, summary="FCM accepts this message. Nothing was delivered.")


def devices_for_test_push(*, tenant: Tenant, to: str) -> list[Device]:
    """The devices a test push to `to` (a token, else an app user id) goes to: all of the
    tenant's devices with that token or of that user, targetable ones first."""
    to = to.strip()
    by_token = list(Device.objects.filter(tenant=tenant, token_hash=hash_token(to)).select_related("user"))
    if by_token:
        return by_token
    devices = Device.objects.filter(tenant=tenant, user__app_user_id=to).select_related("user")
    return list(devices.order_by("-is_active", "-push_permission", "-last_seen_at")[:TEST_PUSH_MAX_DEVICES])


def send_test_push(*, tenant: Tenant, spec: MessageInput, to: str) -> FcmCheck:
    """Send a composed push to one device (by token) or one app user's devices, now.

    Only devices Herald would target receive it; the answer says why others did not.
    A device FCM reports as unregistered is deactivated, as in a real send.
    """
    devices = devices_for_test_push(tenant=tenant, to=to)
    if not devices:
        return FcmCheck(ok=False, summary=f"{tenant.name} has no device with that token or app user id.")
    try:
        client = client_for_tenant(tenant)
    except fcm.FcmError as error:
        return _error_check(error, "Herald cannot send for this tenant.")

    details, sent = [], 0
    for device in devices:
        label = f"{device.get_platform_display()} device …{device.token[-8:]} of {device.user.app_user_id}"
        if not device.is_targetable:
            why = (
                f"deactivated ({device.deactivation_reason or 'no reason'})"
                if not device.is_active
                else "the user has not allowed notifications"
            )
            details.append(f"{label}: not sent, {why}.")
            continue
        try:
            client.send(fcm_message(push=spec, target=device_target(device)))
        except (ValueError, TypeError) as exc:
            return FcmCheck(ok=False, summary="Herald cannot build this message.", details=[str(exc)])
        except fcm.FcmError as error:
            if error.unregistered:
                device.deactivate(reason=error.code)
            details.append(f"{label}: {error.code}. {explain_fcm_error(error.code)}")
            continue
        sent += 1
        details.append(f"{label}: sent.")
    if sent:
        return FcmCheck(
            ok=True, summary=f"Test push sent to {sent} of {len(devices)} device(s).", details=details
        )
    return FcmCheck(ok=False, summary="The test push reached no device.", details=details)
