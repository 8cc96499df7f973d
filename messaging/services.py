"""Sending pushes: creating messages, fanning them out to deliveries, sending, retrying.

The Delivery table is the source of truth, never a task queue: a task only nudges work
that the rows describe (`messaging.tasks` queues one when `fan_out_due` or `send_due`
fires). A delivery is claimed by a worker for DELIVERY_CLAIM_SECONDS with one conditional
UPDATE, sent, and recorded in bulk as results arrive. A worker that dies leaves its claims
to run out; `recover_stalled` (run by `manage.py herald_beat`) nudges such work again, and
a delivery marked sent is never sent again.
"""

import contextlib
import hashlib
import itertools
import logging
import os
import queue
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, Exists, F, Min, OuterRef, Q, Value, When, Window
from django.db.models.base import ModelState
from django.db.models.functions import RowNumber
from django.dispatch import Signal, receiver
from django.utils import timezone

from api import metrics
from audiences import selectors as audience_selectors
from devices.models import Device
from devices.services import deactivate_devices
from messaging import content, fcm, limits
from messaging.models import (
    AbTest,
    Audience,
    Delivery,
    Message,
    SnapshotDevice,
    VariantMode,
    delivery_id_of,
    zone_of,
)
from messaging.selectors import (
    SNAPSHOT_AUDIENCES,
    UnusableAudience,
    audience_devices,
    audience_size,
    delivered_devices,
    listed_variant,
    message_devices,
    page_key,
    user_variants,
)
from messaging.signals import deliveries_recorded, message_completed, push_opened
from tenants.credentials import (
    ADC_ENVIRONMENT_VARIABLE,
    InvalidServiceAccount,
    application_default_service_account,
)
from tenants.encryption import InvalidToken
from tenants.models import FirebaseCredential, Tenant
from tenants.signals import tenant_deactivated

log = logging.getLogger("herald.delivery")

# Background work falls due: a message to fan out (message_id, run_after, rank) or
# deliveries to send (message_id, first_device_id, last_device_id, run_after, rank).
# messaging.tasks, the one place that queues work, listens, and answers True when it queued
# the task; a signal, so that these services never import the tasks that call them.
# A fan-out continues (after_device_id, first_chunk) in a task of its own every
# FANOUT_TASK_CHUNKS chunks. `rank` orders work across tenants by the message's own work:
# 0 is a message's fan-out and first chunk, its k-th chunk ranks k, so that a small new
# message is not queued behind another tenant's big one, however many it has sending.
fan_out_due = Signal()
send_due = Signal()
# An A/B test's wait ends (message_id, run_after): its winner is to be chosen.
winner_due = Signal()
# A send task whose sends are going asks for its message's next queued task (message_id):
# messaging.tasks answers with a QueuedWork, taken off the queue, when the task the queue
# would hand a worker next is this message's own send or fan-out; with None otherwise, and
# on backends that cannot tell (RQ, immediate). With `rank`, the send task holds a chunk
# of that rank never queued (a fan-out it ran handed it over): NOTHING_AHEAD when nothing
# queued would run before it. See `send_deliveries`.
queued_work_wanted = Signal()
# Retries and herald_beat's recoveries: behind every message's first chunk.
RETRY_RANK = 1
TENANT_DEACTIVATED = "The tenant was deactivated."

IDEMPOTENCY_WINDOW = timedelta(hours=24)
DEDUPE_WINDOW = timedelta(minutes=10)


class MessagingError(Exception):
    """A message that cannot be created or changed as asked."""


class NotCancellable(MessagingError):
    pass


class NoTargetableDevice(MessagingError):
    pass


@dataclass(frozen=True)
class QueuedWork:
    """A queued task of a message, taken by the send task already sending it: `task` is
    "send" (args: message_id, first_device_id, last_device_id) or "fan_out" (message_id,
    after_device_id, first_chunk). `done` is called once its work has been handed on."""

    task: str
    args: tuple
    done: Callable[[], None] = lambda: None


# The answer to `queued_work_wanted` with a rank: nothing queued goes before the chunk held.
NOTHING_AHEAD = QueuedWork(task="", args=())


@dataclass(kw_only=True)
class MessageInput:
    title: str
    body: str
    image_url: str = ""
    click_link: str = ""
    data: dict[str, str] = field(default_factory=dict)
    priority: int = 5
    data_only: bool = True
    options: dict = field(default_factory=dict)
    audience: str = Audience.ALL
    audience_params: dict = field(default_factory=dict)
    schedule_at: datetime | None = None
    schedule_tz: str | None = None  # the zone schedule_at was written in; from schedule_at when None
    ttl_seconds: int | None = None
    dry_run: bool = False
    # Exempt from the tenant's marketing frequency cap and quiet hours (messaging.limits).
    transactional: bool = False
    # Localizations and variants (messaging.content): the fields above are variant 0 in
    # `language` ("" for the tenant's default language).
    language: str = ""
    localizations: dict[str, content.Content] = field(default_factory=dict)
    variants: list[content.VariantInput] = field(default_factory=list)  # all of them, or none
    variant_mode: str = VariantMode.SPLIT
    ab_test: dict | None = None  # AbTest's settings: test_percent, wait_seconds, min_opens, ...

    def message_fields(self) -> dict:
        """The Message's own columns: what is set (None is unset), content rows aside."""
        fields = {
            k: v
            for k, v in vars(self).items()
            if v is not None and k not in ("localizations", "variants", "ab_test")
        }
        fields["variant_count"] = max(len(self.variants), 1)
        return fields


def _save_content(message: Message, spec: MessageInput) -> None:
    """A message's other languages and variants, and its A/B test's settings."""
    content.save_contents(message=message, variants=spec.variants, localizations=spec.localizations)
    AbTest.objects.filter(message=message).delete()
    if spec.variant_mode == VariantMode.AB_TEST and len(spec.variants) > 1:
        AbTest.objects.create(message=message, **(spec.ab_test or {}))


def create_message(
    *,
    tenant: Tenant,
    spec: MessageInput,
    source: str = Message.Source.API,
    created_by=None,
    idempotency_key: str = "",
    idempotency_window=IDEMPOTENCY_WINDOW,
    send: bool = True,
) -> tuple[Message, bool]:
    """Create a message and (unless `send` is False: a draft) schedule or start sending it.

    With an idempotency key, a message created with the same key within the window is
    returned instead, with created=False. Returns (message, created).
    """
    now = timezone.now()
    fields = spec.message_fields()
    fields["language"] = spec.language or tenant.default_language
    if spec.schedule_at is not None and spec.schedule_tz is None:
        fields["schedule_tz"] = zone_of(spec.schedule_at)  # +03:00 from the API's RFC 3339 offset
    with transaction.atomic():
        if idempotency_key:
            earlier = (
                Message.objects.select_for_update()
                .filter(tenant=tenant, idempotency_key=idempotency_key)
                .first()
            )
            if earlier is not None:
                if earlier.created_at >= now - idempotency_window:
                    return earlier, False
                earlier.idempotency_key = None  # expired: the key is free again
                earlier.save(update_fields=["idempotency_key"])
        message = Message(
            tenant=tenant,
            source=source,
            created_by=created_by,
            created_at=now,
            idempotency_key=idempotency_key or None,
            **fields,
        )
        try:
            with transaction.atomic():
                message.save()
        except IntegrityError:
            # A concurrent request with the same key won the insert.
            return Message.objects.get(tenant=tenant, idempotency_key=idempotency_key), False
        _save_content(message, spec)
        if send:
            _start(message)
    return message, True


def save_draft(
    *,
    tenant: Tenant,
    spec: MessageInput,
    created_by=None,
    draft: Message | None = None,
    source: str = Message.Source.ADMIN,
) -> Message:
    """Keep a message to send later: a new draft, or `draft` rewritten to `spec`.

    Raises MessagingError when `draft` was sent or cancelled meanwhile.
    """
    if draft is None:
        message, _ = create_message(
            tenant=tenant, spec=spec, source=source, created_by=created_by, send=False
        )
        return message
    fields = spec.message_fields()
    fields["language"] = spec.language or tenant.default_language
    if spec.schedule_at is None:
        fields.update(schedule_at=None, schedule_tz="")
    elif spec.schedule_tz is None:
        fields["schedule_tz"] = zone_of(spec.schedule_at)
    with transaction.atomic():
        changed = Message.objects.filter(pk=draft.pk, status=Message.Status.DRAFT).update(
            tenant=tenant, **fields
        )
        if not changed:
            raise MessagingError("This message is no longer a draft: it was sent or cancelled meanwhile.")
        message = Message.objects.get(pk=draft.pk)
        _save_content(message, spec)
    return message


def send_message(*, message: Message, queue: bool = True) -> Message:
    """Send (or schedule) a draft. With `queue=False` no fan-out task is queued: the caller
    fans it out itself right after the commit (a campaign's trigger send); if it dies
    first, herald_beat's recovery queues the fan-out of a sending message never fanned out."""
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if locked.status != Message.Status.DRAFT:
            raise MessagingError(f"Only a draft can be sent; this message is {locked.get_status_display()}.")
        _start(locked, queue=queue)
    return locked


def _start(message: Message, *, queue: bool = True) -> None:
    now = timezone.now()
    scheduled = message.schedule_at is not None and message.schedule_at > now
    message.status = Message.Status.SCHEDULED if scheduled else Message.Status.SENDING
    message.started_at = None if scheduled else now
    message.save(update_fields=["status", "started_at"])
    run_after = message.schedule_at if scheduled else None
    if queue or scheduled:
        transaction.on_commit(lambda: fan_out_due.send(Message, message_id=message.pk, run_after=run_after))


def cancel_message(*, message: Message, reason: str = "") -> Message:
    """Cancel a draft, scheduled or sending message. Deliveries already sent stay sent;
    deliveries a worker is sending right now finish; the rest fail as CANCELLED, with
    `reason` (kept as the message's error too) or "The message was cancelled."."""
    now = timezone.now()
    with transaction.atomic():
        changed = Message.objects.filter(pk=message.pk, status__in=Message.CANCELLABLE).update(
            status=Message.Status.CANCELLED, cancelled_at=now, completed_at=now, error=reason[:2000]
        )
        if not changed:
            message.refresh_from_db()
            raise NotCancellable(f"A {message.get_status_display().lower()} message cannot be cancelled.")
        cancelled = (
            message.deliveries.unfinished()
            .unclaimed(now)
            .update(
                status=Delivery.Status.FAILED,
                error_code=fcm.CANCELLED,
                error_detail=reason[:2000] or "The message was cancelled.",
                claimed_until=None,
                claim="",
            )
        )
        Message.objects.filter(pk=message.pk).update(failed_count=F("failed_count") + cancelled)
    metrics.record_deliveries(tenant_id=message.tenant.tenant_id, failed={"CANCELLED": cancelled})
    message.refresh_from_db()
    return message


@receiver(tenant_deactivated, dispatch_uid="herald-cancel-tenant-messages")
def cancel_tenant_messages(sender=None, *, tenant: Tenant, reason: str = TENANT_DEACTIVATED, **kwargs) -> int:
    """Stop a deactivated tenant's pushes: its scheduled and sending messages (retries
    included) are cancelled with `reason`; drafts stay drafts. Returns how many.

    Runs when `tenants.signals.tenant_deactivated` fires (the admin's change form and its
    action send it); campaigns will listen to the same signal. Workers check the tenant
    at every claim too (`send_deliveries`), for work that was already in their hands.
    """
    cancelled = 0
    for message in Message.objects.filter(
        tenant_id=tenant.pk, status__in=(Message.Status.SCHEDULED, Message.Status.SENDING)
    ):
        try:
            cancel_message(message=message, reason=reason)
        except NotCancellable:  # finished meanwhile
            continue
        cancelled += 1
    if cancelled:
        log.info(
            "tenant deactivated: messages cancelled",
            extra={"tenant": tenant.tenant_id, "cancelled": cancelled},
        )
    return cancelled


def recipients(*, tenant: Tenant, spec: MessageInput, even_if_scheduled: bool = False) -> int | None:
    """How many devices the push reaches now (None for a topic or condition: FCM knows).

    The "nobody to send to" rule: raises NoTargetableDevice when it reaches none and is to
    go out now; a scheduled push may find its audience by then, unless `even_if_scheduled`
    (SmartAppPush's /developer/push refuses a user without a device whenever it sends).
    """
    size = audience_size(tenant=tenant, audience=spec.audience, params=spec.audience_params)
    if size == 0 and (spec.schedule_at is None or spec.schedule_at <= timezone.now() or even_if_scheduled):
        raise NoTargetableDevice
    return size


@dataclass(frozen=True)
class DeveloperPush:
    message: Message
    count: int  # devices targeted
    deduplicated: bool  # a repeated dedupe_key: the earlier message, nothing sent now


def dedupe_idempotency_key(*, app_user_id: str, dedupe_key: str) -> str:
    """A dedupe_key belongs to one app user: two users' pushes with one key are two pushes.
    (The user's id is hashed: with the key itself it could outgrow the column.)"""
    user = hashlib.sha256(app_user_id.encode()).hexdigest()[:32]
    return f"dedupe:{user}:{dedupe_key}"


def send_developer_push(
    *, tenant: Tenant, app_user_id: str, spec: MessageInput, dedupe_key: str = ""
) -> DeveloperPush:
    """POST /developer/push: every targetable device of one user.

    A dedupe_key repeated for the same user within ten minutes returns the first message
    and sends nothing. Two identical requests at once send once: the key is unique per
    tenant in the database, and `create_message` returns the winner's message to the loser.
    """
    spec.audience, spec.audience_params = Audience.USERS, {"app_user_ids": [app_user_id]}
    spec.transactional = True  # a receipt, an order shipped: never capped or held back
    key = dedupe_idempotency_key(app_user_id=app_user_id, dedupe_key=dedupe_key) if dedupe_key else ""
    if key:
        earlier = Message.objects.filter(
            tenant=tenant, idempotency_key=key, created_at__gte=timezone.now() - DEDUPE_WINDOW
        ).first()
        if earlier is not None:
            return DeveloperPush(
                message=earlier, count=earlier.targeted_count or _count(tenant, spec), deduplicated=True
            )
    count = recipients(tenant=tenant, spec=spec, even_if_scheduled=True)
    message, created = create_message(
        tenant=tenant,
        spec=spec,
        source=Message.Source.DEVELOPER_PUSH,
        idempotency_key=key,
        idempotency_window=DEDUPE_WINDOW,
    )
    return DeveloperPush(
        message=message, count=count if created else message.targeted_count or count, deduplicated=not created
    )


def _count(tenant: Tenant, spec: MessageInput) -> int:
    return audience_size(tenant=tenant, audience=spec.audience, params=spec.audience_params) or 0


# --- FCM credentials --------------------------------------------------------------------


_LOOK_UP = object()


def client_for_tenant(tenant: Tenant, *, credential=_LOOK_UP) -> fcm.FcmClient:
    """The shared FcmClient for a tenant's credential (or, lacking one, for ADC).

    Costs one small query to notice a replaced credential; call it once per batch of
    sends, not per message, or pass the tenant's `credential` (its FirebaseCredential row,
    None for none) read just now with other rows. Raises FcmError(code="CONFIGURATION"):
    permanent when there is no usable credential, not permanent when the stored one cannot
    be decrypted (an operator can bring its key back; deliveries wait for it).
    """
    if credential is _LOOK_UP:
        credential = (
            FirebaseCredential.objects.filter(tenant_id=tenant.pk).defer("encrypted_private_key").first()
        )
    if credential is not None:
        fingerprint: tuple = ("stored", credential.pk, credential.uploaded_at, credential.private_key_id)
    else:
        path = os.environ.get(ADC_ENVIRONMENT_VARIABLE, "")
        if not path:
            raise _no_credential(tenant)
        try:
            changed = os.stat(path).st_mtime_ns
        except OSError:
            changed = None
        fingerprint = ("adc", path, changed)
    return fcm.shared_client(
        key=tenant.pk,
        fingerprint=fingerprint,
        service_account_info=lambda: _service_account_info(tenant=tenant, credential=credential),
    )


def _service_account_info(*, tenant: Tenant, credential: FirebaseCredential | None) -> dict:
    if credential is not None:
        try:
            return credential.service_account_info()
        except InvalidToken:
            # The operator can put this right (a key dropped in a rotation comes back), so
            # it is not permanent: deliveries wait for it instead of failing.
            raise fcm.FcmError(
                fcm.CONFIGURATION,
                undecryptable_detail(tenant),
                permanent=False,
                retry_after=CONFIGURATION_RETRY_SECONDS,
            ) from None
    try:
        info = application_default_service_account()
    except InvalidServiceAccount as exc:
        raise fcm.FcmError(fcm.CONFIGURATION, str(exc), permanent=True) from None
    if info is None:
        raise _no_credential(tenant)
    return info


# How long deliveries wait before trying again an unreadable credential.
CONFIGURATION_RETRY_SECONDS = 60.0


def undecryptable_detail(tenant: Tenant) -> str:
    """What an operator must do when a tenant's stored credential cannot be decrypted."""
    return (
        f"The Firebase credential of tenant {tenant.tenant_id} cannot be decrypted: no key in "
        "HERALD_ENCRYPTION_KEYS, SECRET_KEY or SECRET_KEY_FALLBACKS opens it (a key was dropped "
        "in a rotation before reencrypt_fcm_credentials ran). Put the old key back (first in "
        "SECRET_KEY_FALLBACKS or in HERALD_ENCRYPTION_KEYS), or upload the service-account key "
        "again. Deliveries wait and are tried again until then."
    )


def _no_credential(tenant: Tenant) -> fcm.FcmError:
    return fcm.FcmError(
        fcm.CONFIGURATION,
        f"Tenant {tenant.tenant_id} has no Firebase credential and {ADC_ENVIRONMENT_VARIABLE} "
        "is not set. Upload the service-account key (Firebase console > Project settings > "
        "Service accounts > Generate new private key).",
        permanent=True,
    )


@dataclass(frozen=True)
class CredentialCheck:
    """What a credential check found, in words a tenant admin can act on."""

    ok: bool
    project_id: str
    message: str
    source: str  # "stored" or "GOOGLE_APPLICATION_CREDENTIALS"


def check_credentials(*, tenant: Tenant) -> CredentialCheck:
    """Prove a tenant's credential works: get a fresh token, then a validate_only send.

    The test message goes to a topic with validate_only, so nothing is delivered.
    The outcome is recorded on the stored credential (last check) and returned.
    """
    credential = FirebaseCredential.objects.filter(tenant_id=tenant.pk).first()
    source = "stored" if credential is not None else ADC_ENVIRONMENT_VARIABLE
    project_id = credential.project_id if credential is not None else ""
    try:
        info = _service_account_info(tenant=tenant, credential=credential)
        project_id = info["project_id"]
        ok, message = fcm.check_service_account(info)
    except fcm.FcmError as error:
        ok, message = False, error.detail
    if credential is not None:
        credential.record_check(ok=ok, message=message)
    return CredentialCheck(ok=ok, project_id=project_id, message=message, source=source)


# --- The FCM message ---------------------------------------------------------------------


def fcm_message(*, push: Message | MessageInput, target: fcm.FcmTarget | None = None) -> dict:
    """The FCM message of a push (a stored Message or a composed MessageInput), to `target`.

    The one place a push becomes an FCM message: the send path (without a target, then one
    per delivery), the composer's validation and its test push. Raises ValueError or
    TypeError for a push FCM could not take.
    """
    options = push.options or {}
    return fcm.build_message(
        target=target,
        title=push.title,
        body=push.body,
        data=dict(push.data or {}),
        image=push.image_url,
        click_link=push.click_link,
        priority=push.priority,
        ttl_seconds=push.ttl_seconds,
        collapse_key=options.get("collapse_key", ""),
        data_only=push.data_only,
        android_channel=options.get("android_channel", ""),
        sound=options.get("sound", ""),
        badge=options.get("badge"),
        analytics_label=options.get("analytics_label", ""),
    )


def device_target(device: Device) -> fcm.FcmTarget:
    """Where FCM finds a device: its registration token, or its Firebase installation ID."""
    if device.token_kind == Device.TokenKind.FID:
        return fcm.FcmTarget(fid=device.token)
    return fcm.FcmTarget(token=device.token)


def audience_target(*, audience: str, params: dict) -> fcm.FcmTarget:
    """The FCM target of a topic or condition audience (FCM fans those out itself)."""
    if audience == Audience.TOPIC:
        return fcm.FcmTarget(topic=params["topic"])
    return fcm.FcmTarget(condition=params["condition"])


# --- Fan-out ----------------------------------------------------------------------


@contextlib.contextmanager
def _planner_settings(**values: str):
    """PostgreSQL plans the statements run inside with these settings, set back after.

    Session SET and RESET, not SET LOCAL: in autocommit a SET LOCAL is gone before the next
    statement, and inside a transaction it would outlast the block, into whatever the caller
    runs next. A block that ends in a failed transaction is not RESET (the statement would
    fail too): the rollback that must follow takes back the SET, made in that transaction
    (a SET made before a transaction began is never in a failed one at the block's end:
    the transactions begun inside it have ended).
    """
    previous = getattr(connection, "herald_planner_settings", None)
    with connection.cursor() as cursor:
        cursor.execute("; ".join(f"SET {name} = {value}" for name, value in values.items()))
        connection.herald_planner_settings = values
        try:
            yield
        finally:
            connection.herald_planner_settings = previous
            if not _in_failed_transaction():
                cursor.execute("; ".join(f"RESET {name}" for name in values))


@contextlib.contextmanager
def _planner_defaults():
    """A task's statements under the planner's defaults, even when it runs inside a fan-out's
    reads (a task backend that runs each task as it is queued): those settings are set back
    for the task and again after it. Costs nothing otherwise."""
    values = getattr(connection, "herald_planner_settings", None)
    if not values:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("; ".join(f"RESET {name}" for name in values))
    connection.herald_planner_settings = None
    try:
        yield
    finally:
        connection.herald_planner_settings = values
        if not _in_failed_transaction():
            with connection.cursor() as cursor:
                cursor.execute("; ".join(f"SET {name} = {value}" for name, value in values.items()))


def _in_failed_transaction() -> bool:
    from psycopg.pq import TransactionStatus  # only ever asked on PostgreSQL

    raw = connection.connection
    return raw is not None and raw.info.transaction_status == TransactionStatus.INERROR


@_planner_defaults()
def fan_out(
    *,
    message_id: int,
    after_device_id: int | None = None,
    first_chunk: int = 0,
    send_here: bool = False,
    handed: deque | None = None,
) -> list[tuple[int, int]]:
    """Turn a message into deliveries, a chunk of devices at a time, and queue their sending.

    Streams device ids by primary key (memory stays flat however large the audience)
    and inserts deliveries with ON CONFLICT DO NOTHING, so running it again after a
    crash finishes the job without duplicating anything.

    One task writes at most FANOUT_TASK_CHUNKS chunks, from the device after
    `after_device_id`, queuing each chunk's send as soon as it is written, then queues
    its own continuation from the last device it read: a worker is back at the queue
    every few chunks, so another tenant's new message never waits for a whole fan-out.
    Each chunk ranks by its index in the message (`first_chunk` onward), the
    continuation behind the sends it queued.

    `send_here`: a message that fits in one chunk gets no send task; the chunk's device-id
    range is returned (`[(first, last)]`) for the caller to `send_deliveries` at once. A
    caller that dies first leaves due, unclaimed deliveries: `recover_stalled` queues them.
    Otherwise (and for bigger messages) the sends are queued and `[]` returned.

    `handed` (a send task running the fan-out in its pipeline, `_Feed`): no chunk's send is
    queued; each is appended as (first_device_id, last_device_id, rank) for that task to
    send (it queues those it leaves), their deliveries not marked QUEUED: no task in the
    queue stands for them, so were that worker killed, herald_beat resumes them after the
    usual grace. A queued send and the task that takes it were 2 statements a chunk.
    """
    now = timezone.now()
    _free_task_slot(message_id, now)
    message = Message.objects.select_related("tenant").get(pk=message_id)
    if message.status in (Message.Status.SCHEDULED, Message.Status.SENDING) and not message.tenant.is_active:
        _cancel_for_inactive_tenant(message)
        return []
    if message.status == Message.Status.SCHEDULED:
        if message.schedule_at is None:
            # Read as NULL: a time out of any range (stored before Herald bounded schedule_at,
            # and answered with a 400). Nobody can say when it was meant to go: stop it for good.
            Message.objects.filter(pk=message.pk, status=Message.Status.SCHEDULED).update(
                status=Message.Status.CANCELLED,
                cancelled_at=now,
                completed_at=now,
                error="schedule_at is outside the dates Herald accepts; the message was not sent.",
            )
            return []
        if message.schedule_at > now + timedelta(seconds=1):
            return []  # early (a clock skew or a re-scheduled message); herald_beat will come back
        if not Message.objects.filter(pk=message.pk, status=Message.Status.SCHEDULED).update(
            status=Message.Status.SENDING, started_at=now
        ):
            return []
        message.status, message.started_at = Message.Status.SENDING, now
    if message.status != Message.Status.SENDING or message.fanned_out_at:
        return []
    held: list[dict] = []

    if message.audience in (Audience.TOPIC, Audience.CONDITION):
        _, created = Delivery.objects.get_or_create(
            message=message, device=None, defaults={"language": message.language}
        )
        Message.objects.filter(pk=message.pk).update(targeted_count=1)
        send_due.send(Message, message_id=message.pk)
    else:
        plan = content.ContentPlan.of(message)
        phase = "all"
        if plan.ab_test is not None:
            if plan.ab_test.winner is None and plan.ab_test.test_sent_at is not None:
                return []  # the test is out; messaging.variants chooses the winner when the wait is over
            phase = "test" if plan.ab_test.winner is None else "rest"
        chunk = settings.FANOUT_CHUNK_SIZE
        if message.audience in SNAPSHOT_AUDIENCES and after_device_id is None:
            try:  # again in a phase's or a restarted fan-out's first task: adds only
                snapshot_audience(message)
            except UnusableAudience as exc:
                # Stored rules no Herald can read (an operator's edit): nobody can say whom it
                # was meant for. Stop it for good and say why, as for a lost schedule_at.
                _cancel_unusable(message, reason=f"{exc}; the message was stopped.")
                return []
        # The user's id and language come in the same query: assigning content costs no query.
        devices = message_devices(message).order_by("pk")
        if message.audience == Audience.RECIPIENTS:  # a campaign's send: each user's listed variant
            devices = devices.annotate(listed=listed_variant(message))
            devices = devices.values_list("pk", "user_id", "user__language", "listed")
        else:
            devices = devices.values_list("pk", "user_id", "user__language")
        # Staff marketing messages: the tenant's frequency cap and quiet hours (messaging.limits).
        limited = limits.is_marketing(message) and limits.applies(message.tenant)
        # The rank is the chunk's place in its own message: a message's first chunk goes
        # first, whatever else its tenant has sending; a big message's later ones go back.
        rank, continued = first_chunk, after_device_id is not None
        # The device reads' planner settings (PostgreSQL) are set once for the task's reads
        # and set back as it ends them, whatever ends them.
        with _fan_out_reads(paged=message.audience in PAGED_AUDIENCES):
            while True:
                last_read, full, read = None, False, 0
                limit = max(1, settings.FANOUT_TASK_CHUNKS)
                chunks = _device_chunks(
                    devices,
                    chunk,
                    after=after_device_id or 0,
                    key=page_key(message),
                    paged=message.audience in PAGED_AUDIENCES,
                )
                try:
                    for rows in itertools.islice(chunks, limit):
                        read += 1
                        last_read, full = rows[-1][0], len(rows) >= chunk
                        if phase == "rest":
                            sent, variant_of = _reached_by_test(plan, rows)
                            assigned = plan.assign(rows, phase=phase, sent=sent, variant_of=variant_of)
                        else:
                            assigned = plan.assign(rows, phase=phase)
                        if not assigned:
                            continue
                        # The first chunk a caller may send itself is not marked queued: if that
                        # caller dies, herald_beat resumes it after the usual grace.
                        holding = send_here and rank == first_chunk and not continued
                        unqueued = holding or handed is not None
                        # Counts only new rows: an interrupted run may have made some already.
                        if limited:
                            created = sum(
                                _insert_deliveries(
                                    message_id=message.pk,
                                    assigned=group,
                                    now=due,
                                    queued=due <= now and not unqueued,
                                )
                                for due, group in limits.hold_back(
                                    message=message, rows=rows, assigned=assigned, now=now
                                )
                            )
                            if not created:
                                continue
                        else:
                            _insert_deliveries(
                                message_id=message.pk, assigned=assigned, now=now, queued=not unqueued
                            )
                        send = {
                            "first_device_id": assigned[0][0],
                            "last_device_id": assigned[-1][0],
                            "rank": rank,
                        }
                        rank += 1
                        if holding:  # the first chunk: the caller's to send, if it stays the only one
                            held.append(send)
                            continue
                        if handed is not None:  # a send task running this fan-out sends it
                            handed.append((send["first_device_id"], send["last_device_id"], send["rank"]))
                            continue
                        for queued in (*held, send):  # a second chunk: the message is queued as usual
                            _queue_chunk(message.pk, **queued)
                        held.clear()
                finally:
                    chunks.close()  # on PostgreSQL: the server-side cursor
                if read < limit or not full:
                    break  # the devices ran out in this task
                for queued in held:  # more to come: the held first chunk is queued as usual
                    _queue_chunk(message.pk, **queued)
                held.clear()
                if _continue_fan_out(message.pk, after_device_id=last_read, first_chunk=rank):
                    return []
                after_device_id = last_read  # a backend that cannot queue it: go on here
        if continued:
            _queue_stalled_sends(message.pk)
        if phase == "test":
            _end_test_phase(plan.ab_test)
            return [(h["first_device_id"], h["last_device_id"]) for h in held]
    Message.objects.filter(pk=message.pk).update(fanned_out_at=timezone.now())
    if message.audience in SNAPSHOT_AUDIENCES:  # its deliveries say who it reached now
        SnapshotDevice.objects.filter(message_id=message.pk).delete()
    log.info("fan-out done", extra={"message_id": message.pk})
    finalize_if_done(message_id=message.pk)
    return [(h["first_device_id"], h["last_device_id"]) for h in held]


def _reached_by_test(plan: content.ContentPlan, rows) -> tuple[set[int], dict[int, int]]:
    """What an A/B test's rest must know of the test for a chunk of rows (device_id,
    user_id, ...): the devices in the test's share it sent to (one range of the deliveries'
    index, the chunk's), and the variant of each user in the share it reached on another
    device, for a device of theirs added since (a second query, only when the share has
    devices without a delivery: newcomers, mostly, who get the winner)."""
    share = [row for row in rows if plan.in_test_share(row[1])]
    if not share:
        return set(), {}
    delivered = delivered_devices(plan.message.pk, first=rows[0][0], last=rows[-1][0])
    sent = {row[0] for row in share if row[0] in delivered}
    unsent = sorted({row[1] for row in share if row[0] not in delivered})
    return sent, user_variants(plan.message.pk, unsent)


def _cancel_unusable(message: Message, *, reason: str) -> None:
    try:
        cancel_message(message=message, reason=reason)
    except NotCancellable:  # finished or cancelled meanwhile
        return
    log.warning("message cancelled: unusable rules", extra={"message_id": message.pk, "reason": reason})


def snapshot_audience(message: Message) -> None:
    """Write down which devices a segment or rules message reaches, as its fan-out begins:
    the targetable devices of the users its rules match at its send time become
    SnapshotDevice rows, in one INSERT … SELECT (the rules evaluated once, in the database;
    nothing loaded into Python). The fan-out's tasks read those rows in device-id order
    (`selectors.message_devices`), so the audience is one snapshot however many tasks the
    fan-out takes, no rule is evaluated again per task, and a page costs what a page of
    everyone costs however sparse the segment. Idempotent (ON CONFLICT DO NOTHING); the
    rows go once the fan-out is done. Raises UnusableAudience when the stored rules cannot
    be used, having written nothing."""
    devices = audience_devices(
        tenant=message.tenant,
        audience=message.audience,
        params=message.audience_params or {},
        now=message.started_at,
    )
    try:
        select, params = devices.values(member=F("pk")).query.sql_with_params()
    except EmptyResultSet:
        return  # the segment was deleted: nobody
    table = connection.ops.quote_name(SnapshotDevice._meta.db_table)
    # `WHERE true`: SQLite needs it to read ON CONFLICT after INSERT … SELECT.
    with audience_selectors.jit_off(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (message_id, device_id) "  # noqa: S608
            f"SELECT %s, m.member FROM ({select}) AS m WHERE true "
            "ON CONFLICT (message_id, device_id) DO NOTHING",
            [message.pk, *params],
        )


def _queued(signal: Signal, **kwargs) -> bool:
    """Send `signal` (send_due or fan_out_due, with `kwargs`) and say whether its task was queued.

    Each receiver (messaging.tasks) answers whether it enqueued the task: False where its
    backend cannot (a `run_after` it cannot defer). True if any did; False if none did or
    nothing listens, for the caller to take back its marks so that herald_beat's recovery
    finds the work."""
    return any(queued for _, queued in signal.send(Message, **kwargs))


def _queue_chunk(
    message_id: int, *, first_device_id: int, last_device_id: int, rank: int, marked=None
) -> bool:
    """Queue the send of a chunk whose deliveries are marked QUEUED (by the fan-out that wrote
    them, or herald_beat resuming them: `marked`, by default the message's deliveries so
    marked); where no backend could queue it, take the mark off the chunk's, so that
    herald_beat resumes them after the usual grace. Returns whether it was queued."""
    if _queued(
        send_due,
        message_id=message_id,
        first_device_id=first_device_id,
        last_device_id=last_device_id,
        rank=rank,
    ):
        return True
    if marked is None:
        marked = Delivery.objects.filter(message_id=message_id, claim=QUEUED)
    # Not device_id__range: Django has no range lookup on a foreign key (a FieldError).
    marked.filter(device_id__gte=first_device_id, device_id__lte=last_device_id).update(
        claim="", claimed_until=None
    )
    return False


def _continue_fan_out(message_id: int, *, after_device_id: int, first_chunk: int) -> bool:
    """Queue the rest of a message's fan-out, from the device after `after_device_id`.

    The continuation holds the message's task slot (`task_due_at`) while it waits, so that
    herald_beat does not start the fan-out over meanwhile; the fan-out frees it as it
    starts, and only a continuation lost for DELIVERY_CLAIM_SECONDS is restarted (from the
    first device: idempotent). Returns False where the backend could not queue it.
    """
    now = timezone.now()
    Message.objects.filter(pk=message_id).update(task_due_at=now)
    if _queued(
        fan_out_due,
        message_id=message_id,
        after_device_id=after_device_id,
        first_chunk=first_chunk,
        rank=first_chunk,
    ):
        return True
    Message.objects.filter(pk=message_id, task_due_at=now).update(task_due_at=None)
    return False


def _queue_stalled_sends(message_id: int) -> None:
    """What herald_beat would queue for this message's stalled deliveries (a dead worker's
    chunk): while the fan-out's continuation held the message's slot, it could not."""
    _resume_stalled_deliveries(message_id, now=timezone.now())


def _end_test_phase(ab_test: AbTest) -> None:
    """The A/B test's group has its deliveries: start the wait for the winner (once)."""
    now = timezone.now()
    decide_at = now + timedelta(seconds=ab_test.wait_seconds)
    if AbTest.objects.filter(pk=ab_test.pk, test_sent_at__isnull=True).update(
        test_sent_at=now, decide_at=decide_at
    ):
        log.info("A/B test sent", extra={"message_id": ab_test.pk})
        transaction.on_commit(lambda: winner_due.send(Message, message_id=ab_test.pk, run_after=decide_at))


# Audiences a fan-out reads a page at a time, in device-id order: the tenant's targetable
# devices filtered on the device's and its user's own columns (walking
# device_targetable_id_idx), a segment's or rules' snapshot (walking the snapshot's primary
# key), and a campaign's recipients (probing the list's unique index once per device,
# `selectors.listed_user`). A cursor is planned for all its rows, so it would compute the
# whole rest of the audience again in every bounded task. Users and tokens read through one
# cursor: a list of users or tokens is looked up by its own index (walking the tenant's
# devices to find a few would read them all).
PAGED_AUDIENCES = frozenset({Audience.ALL, Audience.FILTER, Audience.RECIPIENTS, *SNAPSHOT_AUDIENCES})


def _device_chunks(devices, size: int, *, after: int = 0, key: str = "pk", paged: bool = False):
    """The rows of `devices` (ordered by pk, pk first) whose `key` is above `after`, `size`
    at a time, with flat memory.

    `paged` (PAGED_AUDIENCES), and on SQLite always: each chunk is its own query, resuming
    after the last pk. SQLite cannot keep a read open while the senders write (another
    connection: "database is locked"). On PostgreSQL the pages are to be read inside
    `_fan_out_reads`, which plans them with bitmap scans and sorts off.

    Otherwise, on PostgreSQL, one query read through a server-side cursor, planned once per task.
    """
    if connection.vendor == "postgresql" and not paged:
        if after:
            devices = devices.filter(**{f"{key}__gt": after})
        batches = itertools.batched(devices.iterator(chunk_size=size), size, strict=False)
        # The cursor is read to its end: plan for all its rows, not the first tenth that
        # PostgreSQL assumes (a fast-start plan runs the rule subqueries row by row, 3-4x slower).
        with _planner_settings(cursor_tuple_fraction="1"):
            first = next(batches, None)  # DECLARE: the query is planned here
        if first is not None:
            yield first
            yield from batches
        return
    last = after
    while True:
        rows = list(devices.filter(**{f"{key}__gt": last})[:size])
        if rows:
            yield rows
        if len(rows) < size:
            return  # a short page is the last: no query to find the next one empty
        last = rows[-1][0]


@contextlib.contextmanager
def _fan_out_reads(*, paged: bool):
    """A fan-out task's paged device reads (PostgreSQL): planned with bitmap scans and sorts
    off, so that each page walks the index in id order and stops at its rows whatever the
    statistics say (a fresh, never-analyzed table otherwise reads and sorts every device of
    the tenant for each page: 1–3 s a page at a million devices, against 1 ms;
    bench/README.md).

    Set once for the task's reads, not around each page (a SET and a RESET per page were 2
    statements per 1,000 deliveries): the task's own inserts and enqueues between pages run
    under them too, which plans them no differently (they read no table by a range). Set
    back as the block ends, however it ends; a task run at once inside it (a backend that
    runs tasks as they are queued) runs under the defaults (`_planner_defaults`).
    """
    if not paged or connection.vendor != "postgresql":
        yield
        return
    with _planner_settings(enable_bitmapscan="off", enable_sort="off"):
        yield


def _insert_deliveries(
    *, message_id: int, assigned: list[tuple[int, int, str]], now: datetime, queued: bool = False
) -> int:
    """Create pending deliveries for these (device_id, variant, language), due at `now`, and
    count the new ones (an interrupted run may have made some already) into the message's
    targeted_count; return how many.

    `queued`: their send task is being queued now. They are marked as herald_beat marks the
    sends it queues (QUEUED, claimed_until just before `now`: any worker may claim them),
    so that its passes leave them to that task for DELIVERY_CLAIM_SECONDS, not the 30 s
    grace: a big message's later chunks, waiting their turn in a busy queue, are not taken
    for stalled and queued a second time.

    Multi-row INSERT … ON CONFLICT DO NOTHING with only the values that differ per
    row as parameters: bulk_create's model objects and per-field preparation were most
    of a fan-out's cost (and a COUNT was needed to learn what it had skipped).
    """
    table = connection.ops.quote_name(Delivery._meta.db_table)
    messages = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(
        connection.ops.quote_name(c)
        for c in (
            "message_id",
            "device_id",
            "next_attempt_at",
            "variant",
            "language",
            "status",
            "attempts",
            "claim",
            "claimed_until",
            "fcm_message_name",
            "error_code",
            "error_detail",
            "tracking_token",  # none stored: a new delivery's token is derived from its id
        )
    )
    constants = "'pending', 0, %s, %s, '', '', '', ''"
    claim, claimed_until = (QUEUED, now - QUEUED_BEFORE) if queued else ("", None)
    if connection.vendor == "postgresql":
        # The rows as four arrays: the statement's text stays short and the same (psycopg
        # parses a query's placeholders on every call when the text is long, 50 ms for 500
        # rows of VALUES), and the count goes in with the INSERT.
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH ins AS (INSERT INTO {table} ({columns}) "  # noqa: S608
                f"SELECT %s, r.device_id, %s, r.variant, r.language, {constants} "
                "FROM unnest(%s::bigint[], %s::int[], %s::text[]) "
                "AS r(device_id, variant, language) "
                "ON CONFLICT DO NOTHING RETURNING 1), n AS (SELECT count(*) AS n FROM ins), "
                f"m AS (UPDATE {messages} SET targeted_count = targeted_count + n.n "
                "FROM n WHERE id = %s AND n.n > 0) SELECT n FROM n",
                [
                    message_id,
                    now,
                    claim,
                    claimed_until,
                    [device_id for device_id, _, _ in assigned],
                    [variant for _, variant, _ in assigned],
                    [language for _, _, language in assigned],
                    message_id,
                ],
            )
            return cursor.fetchone()[0]
    row = f"(%s, %s, %s, %s, %s, {constants})"
    at = connection.ops.adapt_datetimefield_value(now)
    claimed_until = connection.ops.adapt_datetimefield_value(claimed_until)
    per_statement = (connection.features.max_query_params or 100_000) // 7
    created = 0
    with connection.cursor() as cursor:
        for start in range(0, len(assigned), per_statement):
            batch = assigned[start : start + per_statement]
            params = [
                v
                for device_id, variant, language in batch
                for v in (
                    message_id,
                    device_id,
                    at,
                    variant,
                    language,
                    claim,
                    claimed_until,
                )
            ]
            insert = (
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(batch))} "  # noqa: S608
                "ON CONFLICT DO NOTHING"
            )
            cursor.execute(insert, params)
            if cursor.rowcount:
                Message.objects.filter(pk=message_id).update(
                    targeted_count=F("targeted_count") + cursor.rowcount
                )
            created += cursor.rowcount
    return created


# --- Sending ----------------------------------------------------------------------


@_planner_defaults()
def send_deliveries(
    *, message_id: int, first_device_id: int | None = None, last_device_id: int | None = None
) -> None:
    """Send the due deliveries of a message (within a device-id range, if given), and go on
    with the message's next queued chunks while they are next in the queue: a pipeline.

    Claims up to a chunk at a time, sends through the worker's long-lived sending threads
    over the pooled FCM client, and records results in bulk as they come in. While a
    chunk's last sends are still going, the next one is claimed (see `_Feed`): first the
    rest of this task's range, then, for up to DELIVERY_PIPELINE_SECONDS, the message's own
    next send or fan-out task, taken off the queue only when it is the task the queue
    would hand a worker next (nothing ranks above it: another message's first chunk is
    never passed). So sends stay in flight across chunk and task boundaries, and each chunk
    taken saves the queue a task. A task that finds its chunk already sent ends at once.
    """
    if first_device_id is None:
        _free_task_slot(message_id, timezone.now())  # this may be the task the slot stands for
    # The tenant's credential comes along: client_for_tenant needs no query of its own.
    message = (
        Message.objects.select_related("tenant__firebase_credential")
        .defer("tenant__firebase_credential__encrypted_private_key")
        .get(pk=message_id)
    )
    if message.status != Message.Status.SENDING:
        return
    if not message.tenant.is_active:
        _cancel_for_inactive_tenant(message)
        return
    try:
        credential = Tenant.firebase_credential.related.get_cached_value(message.tenant)
        client = client_for_tenant(message.tenant, credential=credential)
    except fcm.FcmError as exc:
        if exc.permanent:
            _fail_unsent(message, code=exc.code, detail=exc.detail)
        else:
            _wait_for_credential(message, first_device_id, last_device_id, exc)
        return
    feed = _Feed(message, first_device_id, last_device_id)
    retrying = _send_feed(message, client, feed)
    if feed.stopped:
        return  # cancelled, or its tenant deactivated, meanwhile
    first, last = feed.span()
    if retrying or first is None:
        # Deliveries this pass made wait, or (a message-wide task, whose slot was freed
        # above) any that others made wait: the next task is queued for the soonest.
        _schedule_retries(message, first, last)
    finalize_if_done(message_id=message.pk)


class _Feed:
    """The chunks one send task sends, claimed one after another in the main thread while
    the sending threads work on the chunk before.

    First the task's own range (a chunk; a message-wide task: every due delivery), then,
    until DELIVERY_PIPELINE_SECONDS have passed since the task began, the message's next
    queued task whenever it is the one the queue would hand a worker next (the queue's
    ranks decide, so the fairness of the queue holds): a send task's range is claimed here,
    a fan-out continuation runs here and hands its chunks over unqueued (`handed`): each
    is sent when nothing queued would have run before it, had it been queued (one read of
    the queue's first task); those left when the task stops are queued then. The task
    taken is marked done in the queue; were this worker killed, its deliveries wait
    unclaimed (or their claims run out) and `recover_stalled` queues them again.
    """

    clock = staticmethod(time.monotonic)  # tests put a scripted one here

    def __init__(self, message: Message, first_device_id, last_device_id):
        self.message = message
        self.current: tuple | None = (first_device_id, last_device_id)
        self.ranges = [self.current]
        self.until = self.clock() + settings.DELIVERY_PIPELINE_SECONDS
        self.stopped = False  # the message stopped sending
        self.taken = 0  # queued tasks taken
        self.sent_any = False
        self.handed: deque = deque()  # (first, last, rank): chunks a fan-out run here left to it

    def span(self) -> tuple:
        """The device-id range this task covered (the taken chunks follow each other), or
        (None, None) when it sent message-wide: what `_schedule_retries` looks at. Never
        message-wide for chunks alone: that would find the pending deliveries of chunks
        still queued, and queue a message-wide task to send them outside their ranks."""
        if any(first is None for first, _ in self.ranges):
            return None, None
        return min(first for first, _ in self.ranges), max(last for _, last in self.ranges)

    def next_chunk(self) -> list[Delivery]:
        """The next claimed chunk; [] when there is none for this task."""
        while not self.stopped:
            if self.current is not None:
                first, last = self.current
                # The claim itself refuses a cancelled message or a deactivated tenant; only
                # when it comes back empty is it worth asking which (and cancelling).
                deliveries, more = _claim_chunk(self.message, first, last)
                if not more:
                    self.current = None  # the claim took every due delivery there was
                if deliveries:
                    self.sent_any = True
                    return deliveries
                self.current = None
                if not _still_sending(self.message):
                    self.stopped = True
                    return []
                if not self.sent_any:
                    return []  # a task whose chunk another task sent: that one goes on, not this
            if not self._take_queued():
                self._queue_handed()
                return []
        return []

    def _take_queued(self) -> bool:
        if self.clock() >= self.until:
            return False
        rank = self.handed[0][2] if self.handed else None
        work = next(
            (w for _, w in queued_work_wanted.send(Message, message_id=self.message.pk, rank=rank) if w),
            None,
        )
        if work is None:
            return False
        if work is NOTHING_AHEAD:  # the chunk a fan-out run here wrote goes next, unqueued
            first, last, _ = self.handed.popleft()
            self.current = (first, last)
            self.ranges.append(self.current)
            return True
        self.taken += 1
        try:
            if work.task == "fan_out":
                after, first_chunk = (*work.args[1:], None, 0)[:2]
                try:
                    fan_out(
                        message_id=self.message.pk,
                        after_device_id=after,
                        first_chunk=first_chunk,
                        handed=self.handed,
                    )
                except Exception:
                    # Not this task's sends to lose: the fan-out is left to herald_beat's
                    # recovery (a message not fanned out is fanned out again), as if its
                    # own task had failed.
                    log.exception("fan-out failed", extra={"message_id": self.message.pk})
                    self.until = float("-inf")  # and take nothing more
                    return False
            else:
                first, last = (*work.args[1:], None, None)[:2]
                if first is None:
                    _free_task_slot(self.message.pk, timezone.now())
                self.current = (first, last)
                self.ranges.append(self.current)
        finally:
            work.done()
        return True

    def _queue_handed(self) -> None:
        """Queue the sends of the chunks handed over that this task leaves (its time is up, or
        another message's work goes first), marked as the fan-out marks what it queues."""
        if not self.handed or self.stopped:
            return  # a message that stopped sending: nothing to queue
        first, last = self.handed[0][0], self.handed[-1][1]
        Delivery.objects.unfinished().filter(
            message_id=self.message.pk, device_id__gte=first, device_id__lte=last, claim=""
        ).update(claim=QUEUED, claimed_until=timezone.now() - QUEUED_BEFORE)
        while self.handed:
            first, last, rank = self.handed.popleft()
            _queue_chunk(self.message.pk, first_device_id=first, last_device_id=last, rank=rank)


class _SingleChunk:
    """A feed of one chunk already claimed (`_send_chunk`)."""

    def __init__(self, deliveries: list[Delivery]):
        self.chunks = [deliveries] if deliveries else []

    def next_chunk(self) -> list[Delivery]:
        return self.chunks.pop() if self.chunks else []


def _still_sending(message: Message) -> bool:
    """Whether the message may send more: still sending, and its tenant still active (a
    tenant deactivated while its work waited in the queue has the message cancelled here)."""
    status, active = Message.objects.filter(pk=message.pk).values_list("status", "tenant__is_active").get()
    message.status = status
    if status != Message.Status.SENDING:
        return False
    if not active:
        _cancel_for_inactive_tenant(message)
        return False
    return True


def _cancel_for_inactive_tenant(message: Message) -> None:
    try:
        cancel_message(message=message, reason=TENANT_DEACTIVATED)
    except NotCancellable:
        pass


def _claim(message, first_device_id, last_device_id) -> list[Delivery]:
    return _claim_chunk(message, first_device_id, last_device_id)[0]


def _claim_chunk(message, first_device_id, last_device_id) -> tuple[list[Delivery], bool]:
    """Claim up to a chunk of the message's due deliveries for this worker, devices loaded.

    The conditional UPDATE is the claim: of two workers racing for a row, one matches; none
    does once the message is cancelled or its tenant deactivated. On PostgreSQL it is one
    statement: the due rows are locked with SKIP LOCKED (racing workers take different
    rows instead of queueing on each other), claimed, and returned with their devices.
    Returns the claimed deliveries, and whether more were due than a chunk (on SQLite:
    whether the chunk is full).
    """
    now = timezone.now()
    # 64 random bits tell concurrent claims apart; 16 characters, not 32, keep the claimed
    # row version small enough that a page the fan-out half filled takes one for each row
    # (a claim that stays in its page is a HOT update: no index entries).
    token = secrets.token_hex(8)
    until = now + timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS)
    if connection.vendor == "postgresql":
        return _claim_returning(message, first_device_id, last_device_id, now=now, token=token, until=until)
    due = message.deliveries.unfinished().unclaimed(now).filter(next_attempt_at__lte=now)
    if first_device_id is not None:
        due = due.filter(device_id__gte=first_device_id, device_id__lte=last_device_id)
    ids = list(due.order_by("device_id").values_list("pk", flat=True)[: settings.FANOUT_CHUNK_SIZE])
    if not ids:
        return [], False
    # The conditional UPDATE is the claim: of two workers racing for a row, one matches; none
    # does once the message is cancelled or its tenant deactivated. The claim's conditions
    # must sit on the updated table itself: filtering through `message__…` makes Django write
    # `id IN (SELECT … FROM delivery JOIN message …)`, and PostgreSQL, once the first claimer
    # commits, re-checks only the outer row, not the subquery's stale copy, so both claimed it.
    sending = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING, tenant__is_active=True)
    Delivery.objects.filter(pk__in=ids, message_id__in=sending.values("pk")).unfinished().unclaimed(
        now
    ).update(claim=token, claimed_until=until)
    # By primary key: the claim column has no index, and reading by it alone scanned the whole
    # table for every chunk (~0.3 s a chunk at 1,000,000 deliveries).
    claimed = list(Delivery.objects.filter(pk__in=ids, claim=token).select_related("device"))
    return claimed, len(ids) >= settings.FANOUT_CHUNK_SIZE


# What a claim loads, in the models' field order (Model.from_db takes values in that order).
_CLAIMED_DELIVERY_FIELDS = (
    "id",
    "device_id",
    "status",
    "attempts",
    "stored_tracking_token",
    "variant",
    "language",
)
_CLAIMED_DEVICE_FIELDS = ("user_id", "token", "token_kind", "platform")


def _claim_sql(*, in_range: bool) -> str:
    qn = connection.ops.quote_name
    delivery, device = qn(Delivery._meta.db_table), qn(Device._meta.db_table)
    message, tenant = qn(Message._meta.db_table), qn(Tenant._meta.db_table)
    returned = ", ".join(f"d.{qn(Delivery._meta.get_field(f).column)}" for f in _CLAIMED_DELIVERY_FIELDS)
    devices = ", ".join(f"dev.{qn(f)}" for f in _CLAIMED_DEVICE_FIELDS)
    in_range = "AND device_id BETWEEN %(first)s AND %(last)s" if in_range else ""
    return f"""
        WITH due AS (
            SELECT id, device_id FROM {delivery}
            WHERE message_id = %(message)s AND status IN ('pending', 'retrying')
              AND (claimed_until IS NULL OR claimed_until < %(now)s) AND next_attempt_at <= %(now)s
              {in_range}
            ORDER BY device_id
            LIMIT %(limit)s + 1
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE {delivery} d SET claim = %(token)s, claimed_until = %(until)s
            FROM (SELECT id FROM due ORDER BY device_id LIMIT %(limit)s) chunk
            WHERE d.id = chunk.id AND EXISTS (
                SELECT 1 FROM {message} m JOIN {tenant} t ON t.id = m.tenant_id
                WHERE m.id = %(message)s AND m.status = 'sending' AND t.is_active
            )
            RETURNING {returned}
        )
        SELECT d.*, {devices}, (SELECT count(*) FROM due) > %(limit)s
        FROM claimed d LEFT JOIN {device} dev ON dev.id = d.device_id
        ORDER BY d.device_id
    """  # noqa: S608


def _claim_returning(
    message, first_device_id, last_device_id, *, now, token, until
) -> tuple[list[Delivery], bool]:
    params = {
        "message": message.pk,
        "now": now,
        "first": first_device_id,
        "last": last_device_id,
        "limit": settings.FANOUT_CHUNK_SIZE,
        "token": token,
        "until": until,
    }
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(in_range=first_device_id is not None), params)
        rows = cursor.fetchall()
    split = len(_CLAIMED_DELIVERY_FIELDS)
    deliveries = []
    for row in rows:
        delivery = _loaded(Delivery, zip(_CLAIMED_DELIVERY_FIELDS, row[:split], strict=True))
        delivery.message_id, delivery.claim, delivery.claimed_until = message.pk, token, until
        device = None
        if delivery.device_id is not None:
            device = _loaded(Device, zip(_CLAIMED_DEVICE_FIELDS, row[split:-1], strict=True))
            device.id = delivery.device_id
        delivery._state.fields_cache["device"] = device  # read with the claim: no query when used
        deliveries.append(delivery)
    return deliveries, bool(rows) and rows[0][-1]


def _loaded(model, values) -> models.Model:
    """An instance of `model` from (field, value) pairs read by hand, as Model.from_db would
    make it (fields not given are deferred: read on first use) without its per-field
    __init__, which was a tenth of a worker's CPU at two instances per delivery."""
    instance = model.__new__(model)
    instance._state = ModelState()
    instance._state.adding, instance._state.db = False, connection.alias
    instance.__dict__.update(values)
    return instance


def _payload(message: Message, template: dict, delivery: Delivery) -> dict:
    """A delivery's FCM message: the message's own, plus its target and tracking token."""
    payload = dict(template)
    tracking_token = delivery.tracking_token  # derived: one AES block
    payload["data"] = {**template.get("data", {}), "tracking_token": tracking_token}
    if delivery.device is None:
        payload.update(audience_target(audience=message.audience, params=message.audience_params).as_fields())
    else:
        payload.update(device_target(delivery.device).as_fields())
    # A delivery sent again (its first answer was lost in a crash) replaces its first copy
    # on the device instead of showing twice. A message's own collapse_key stays.
    return fcm.with_collapse_key(payload, tracking_token)


class _Senders:
    """The worker process's sending threads: started once, reused by every chunk.

    A pool per chunk cost a worker ~18 % of its CPU in thread starts (bench/fanout.py).
    Rebuilt only when SEND_CONCURRENCY changes, or in a forked child (RQ's work horse),
    where the parent's threads do not exist.
    """

    _lock = threading.Lock()
    _pool: ThreadPoolExecutor | None = None
    _key: tuple = ()

    @classmethod
    def pool(cls, size: int) -> ThreadPoolExecutor:
        key = (os.getpid(), size)
        with cls._lock:
            if cls._pool is None or cls._key != key:
                old = cls._pool if cls._key[:1] == key[:1] else None
                cls._pool, cls._key = (
                    ThreadPoolExecutor(max_workers=size, thread_name_prefix="herald-send"),
                    key,
                )
                if old is not None:
                    old.shutdown(wait=False)
            return cls._pool


def _send_chunk(message: Message, client, deliveries: list[Delivery]) -> bool:
    """Send one claimed chunk (see `_send_feed`); whether any delivery was left to retry."""
    return _send_feed(message, client, _SingleChunk(deliveries))


class _Templates(dict):
    """The FCM message of each (variant, language) of a message, built once, on first use."""

    def __init__(self, message: Message):
        super().__init__()
        self.message, self.plan = message, None

    def __missing__(self, key):
        if self.plan is None:  # read with the first chunk: a task with nothing to send reads nothing
            self.plan = content.ContentPlan.of(self.message)
        template = self[key] = fcm_message(push=self.plan.push(*key))
        return template

    def of(self, delivery: Delivery) -> dict:
        return self[(delivery.variant, delivery.language)]


def _send_feed(message: Message, client, feed) -> bool:
    """Send the chunks `feed` hands out, one after another without a pause, writing results
    as they come in; whether any delivery was left to retry.

    The next chunk is claimed (`feed.next_chunk()`, in this thread) once fewer than half a
    chunk's sends, or SEND_CONCURRENCY, are left waiting, so the sending threads never run
    dry at a chunk's end. What a crash can cost is every send FCM accepted whose result is
    not yet written: the delivery is sent again once the claim runs out. So at most
    DELIVERY_MAX_UNRECORDED sends are ever between the start of their request and the commit
    of their result (a thread waits for a permit before it sends; recording gives the
    permits back), and results are written every DELIVERY_RESULT_BATCH answers or
    DELIVERY_RESULT_INTERVAL seconds, whichever comes first. Sends go on while a batch is
    being written or the next chunk claimed (up to the cap). Claimed deliveries waiting
    for a thread were never sent: a crash leaves them to be sent once, later.
    """
    templates = _Templates(message)
    if isinstance(client, fcm.CurlFcmClient):
        return _send_feed_multiplexed(message, client, feed, templates)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    cap = max(1, settings.DELIVERY_MAX_UNRECORDED)
    unrecorded = threading.Semaphore(cap)
    stopping = threading.Event()

    def send_one(delivery: Delivery, template: dict) -> None:
        if stopping.is_set():
            return  # the recording stopped: no permit is ever given back
        unrecorded.acquire()
        try:
            answers.put(None if stopping.is_set() else _send_one(message, client, template, delivery))
        except BaseException as exc:  # handed to the recording thread, which raises it
            answers.put(exc)

    threads = max(1, settings.SEND_CONCURRENCY)
    pool = _Senders.pool(threads)
    low_water = max(threads, settings.FANOUT_CHUNK_SIZE // 2)
    batch: list = []
    flush_at = 0.0
    retrying = False
    futures: deque = deque()
    waiting, exhausted = 0, False
    try:
        while True:
            if not exhausted and waiting <= low_water:
                chunk = feed.next_chunk()
                if not chunk:
                    exhausted = True
                else:
                    while futures and futures[0].done():
                        futures.popleft()
                    futures.extend(pool.submit(send_one, d, templates.of(d)) for d in chunk)
                    waiting += len(chunk)
                continue
            if not (waiting or batch):
                break
            if waiting:
                try:
                    timeout = max(0.0, flush_at - time.monotonic()) if batch else None
                    outcome = answers.get(timeout=timeout)
                except queue.Empty:
                    outcome = _NO_ANSWER
                else:
                    waiting -= 1
            else:
                outcome = _NO_ANSWER
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome is None:  # not sent (a stalled claim): nothing to write
                unrecorded.release()
            elif outcome is not _NO_ANSWER:
                if not batch:
                    flush_at = time.monotonic() + settings.DELIVERY_RESULT_INTERVAL
                batch.append(outcome)  # only this thread touches batch
            if batch and (
                not waiting or len(batch) >= settings.DELIVERY_RESULT_BATCH or time.monotonic() >= flush_at
            ):
                retrying |= _record(message, batch)
                for _ in batch:
                    unrecorded.release()
                batch = []
    except BaseException:
        # Results can no longer be recorded (the database went away): send no more of
        # what was claimed, or all of it would go out again once the claims run out.
        stopping.set()
        for future in futures:
            future.cancel()
        for _ in range(threads):  # wake the threads waiting for a permit
            unrecorded.release()
        raise
    return retrying


_NO_ANSWER = object()


class _MultiplexedSender(_Senders):
    """The worker's one thread that drives the curl client's `send_many` (HTTP/2
    multiplexing: one thread keeps hundreds of sends in flight)."""

    _lock = threading.Lock()
    _pool: ThreadPoolExecutor | None = None
    _key: tuple = ()


def _send_feed_multiplexed(message: Message, client, feed, templates: _Templates) -> bool:
    """`_send_feed` over the curl transport: the chunks go out in batches through the
    client's `send_many`, from one long-lived thread, while this thread claims the next
    chunk and records the batch before. A batch is DELIVERY_RESULT_BATCH sends, at most
    half DELIVERY_MAX_UNRECORDED (one batch being recorded and the next one sending stay
    within the cap); its results are written when its last answer is in
    (DELIVERY_RESULT_INTERVAL does not apply)."""
    size = max(1, min(settings.DELIVERY_RESULT_BATCH, max(1, settings.DELIVERY_MAX_UNRECORDED) // 2))
    pending: deque = deque()
    exhausted = False
    stopping = threading.Event()

    def next_batch() -> list[Delivery]:
        nonlocal exhausted
        while len(pending) < size and not exhausted:
            chunk = feed.next_chunk()
            exhausted = not chunk
            pending.extend(chunk)
        return [pending.popleft() for _ in range(min(size, len(pending)))]

    def send(batch: list[Delivery]) -> list:
        if stopping.is_set():
            return []
        outcomes, sendable = [], []
        for delivery in batch:
            outcome = _unsendable(message, delivery)
            if outcome is None:
                sendable.append(delivery)
            elif outcome is not _NOT_SENT:
                outcomes.append(outcome)
        payloads = [_payload(message, templates.of(d), d) for d in sendable]
        for delivery, result in zip(
            sendable,
            client.send_many(payloads, validate_only=message.dry_run) if payloads else [],
            strict=True,
        ):
            outcomes.append((delivery, result, None) if isinstance(result, str) else (delivery, None, result))
        return outcomes

    sender = _MultiplexedSender.pool(1)
    retrying = False
    batch = next_batch()
    for delivery in batch:
        templates.of(delivery)  # built here, not in the sending thread
    future = sender.submit(send, batch) if batch else None
    try:
        while future is not None:
            batch = next_batch()  # claimed (and templates built) while the batch before sends
            for delivery in batch:
                templates.of(delivery)
            outcomes = future.result()
            future = sender.submit(send, batch) if batch else None
            if outcomes:
                retrying |= _record(message, outcomes)
    except BaseException:
        # Results can no longer be recorded: send no more (see _send_feed).
        stopping.set()
        if future is not None:
            future.cancel()
        raise
    return retrying


_NOT_SENT = object()


def _unsendable(message: Message, delivery: Delivery):
    """None when the delivery is to be sent; else its outcome without a send, or _NOT_SENT
    (a stalled claim: nothing to write)."""
    if delivery.claimed_until is not None and timezone.now() >= delivery.claimed_until:
        # This worker stalled past its claim; another may be sending the delivery now.
        return _NOT_SENT
    if delivery.device_id is None and message.audience not in (Audience.TOPIC, Audience.CONDITION):
        return (
            delivery,
            None,
            fcm.FcmError(
                code=fcm.DEVICE_GONE,
                status=None,
                permanent=True,
                retry_after=None,
                detail="The device was removed.",
            ),
        )
    return None


def _send_one(message: Message, client, template: dict, delivery: Delivery):
    """(delivery, message name, None) or (delivery, None, FcmError); None when not sent.

    Runs in a sending thread: it touches no database connection (everything it reads was
    loaded with the claim), so a worker's connections stay one whatever SEND_CONCURRENCY.
    """
    outcome = _unsendable(message, delivery)
    if outcome is _NOT_SENT:
        return None
    if outcome is not None:
        return outcome
    try:
        name = client.send(_payload(message, template, delivery), validate_only=message.dry_run)
        return delivery, name, None
    except fcm.FcmError as exc:
        return delivery, None, exc


# Where retry jitter comes from; tests put a seeded or scripted one here.
jitter = random.Random()
RETRY_BASE_SECONDS = 10.0  # full-jitter window of the first retry, doubling per attempt
RETRY_MAX_SECONDS = 3600.0
QUOTA_FLOOR_SECONDS = 60.0  # FCM: QUOTA_EXCEEDED without Retry-After backs off from a minute


def retry_delay(*, attempts: int, error: fcm.FcmError) -> float:
    """Seconds before trying a delivery again after its `attempts`-th send failed with `error`.

    FCM said when (Retry-After): no sooner than that, plus up to half as much again of
    jitter. QUOTA_EXCEEDED without Retry-After: a minute, doubling per attempt, plus jitter.
    Anything else: exponential backoff with full jitter, at least a second. Every retry is
    jittered, so devices that failed together do not come back together.
    """
    if error.retry_after is not None:
        floor = error.retry_after
    elif error.code == fcm.QUOTA_EXCEEDED:
        floor = QUOTA_FLOOR_SECONDS * 2 ** max(0, attempts - 1)
    else:
        floor = 0.0
    if floor:
        delay = floor + jitter.uniform(0, max(1.0, floor / 2))
    else:
        delay = jitter.uniform(1.0, RETRY_BASE_SECONDS * 2 ** max(1, attempts))
    return min(delay, max(RETRY_MAX_SECONDS, floor))


def _record(message: Message, outcomes) -> bool:
    """Write a batch of send results: one set-based statement on PostgreSQL (deliveries and
    the message's counters together), whatever the batch size. Returns whether any of the
    deliveries written is to be retried.

    Only deliveries this worker still holds are written: a claim that ran out mid-send may
    have passed to another worker, whose result is the one that counts.
    """
    now = timezone.now()
    sent, failed, retrying, unregistered = [], [], [], set()
    for delivery, name, error in outcomes:
        if not delivery.claim:
            continue  # never held
        delivery.attempts += 1
        if error is None:
            delivery.status, delivery.sent_at, delivery.fcm_message_name = Delivery.Status.SENT, now, name
            delivery.error_code = delivery.error_detail = ""
            sent.append(delivery)
            continue
        delivery.error_code, delivery.error_detail = error.code, error.detail[:2000]
        retry_at = now + timedelta(seconds=retry_delay(attempts=delivery.attempts, error=error))
        if (
            not error.permanent
            and delivery.attempts < settings.DELIVERY_MAX_ATTEMPTS
            and retry_at < message.deadline
        ):
            delivery.status, delivery.next_attempt_at = Delivery.Status.RETRYING, retry_at
            retrying.append(delivery)
        else:
            delivery.status = Delivery.Status.FAILED
            if error.unregistered and delivery.device_id:
                unregistered.add(delivery.pk)
            failed.append(delivery)
    # A dry run's accepted deliveries were validated, not sent: counted apart.
    sent_status = Delivery.Status.VALIDATED if message.dry_run else Delivery.Status.SENT
    for delivery in sent:
        delivery.status = sent_status
    with transaction.atomic():
        held = _write_results(message, sent + failed + retrying, now=now)
        sent = [d for d in sent if d.pk in held]
        failed = [d for d in failed if d.pk in held]
        retrying = [d for d in retrying if d.pk in held]
        dead_devices: dict[str, list[int]] = {}
        for delivery in failed:
            if delivery.pk in unregistered:
                dead_devices.setdefault(delivery.error_code, []).append(delivery.device_id)
        for code, device_ids in dead_devices.items():
            deactivate_devices(device_ids=device_ids, reason=code)
        if sent or failed:
            deliveries_recorded.send(sender=Delivery, message=message, sent=sent, failed=failed, at=now)
    metrics.record_deliveries(
        tenant_id=message.tenant.tenant_id,
        sent=len(sent),
        failed=Counter(d.error_code for d in failed),
        retrying=Counter(d.error_code for d in retrying),
    )
    if failed or retrying:
        log.info(
            "delivery batch",
            extra={
                "message_id": message.pk,
                "sent": len(sent),
                "failed": len(failed),
                "retrying": len(retrying),
                "errors": dict(Counter(d.error_code for d in failed + retrying)),
            },
        )
    return bool(retrying)


def _write_results(message: Message, deliveries: list[Delivery], *, now: datetime) -> set[int]:
    """Write the outcome each delivery carries (status, attempts, name or error, next
    attempt) where its claim still holds, and add the sent, validated and failed ones to
    the message's counters. Returns the ids written.

    PostgreSQL: one statement, the rows passed as arrays (`UPDATE … FROM unnest(…)`), so
    the statement's text is the same whatever the batch. Elsewhere (SQLite ≥ 3.33): one
    `UPDATE … FROM (VALUES …) RETURNING` per batch, and the counters apart.
    """
    if not deliveries:
        return set()
    answered = "validated_count" if message.dry_run else "sent_count"
    rows = [
        (
            d.pk,
            d.claim,
            d.status,
            d.attempts,
            d.fcm_message_name if d.status in (Delivery.Status.SENT, Delivery.Status.VALIDATED) else None,
            d.error_code,
            d.error_detail,
            d.next_attempt_at if d.status == Delivery.Status.RETRYING else None,
        )
        for d in deliveries
    ]
    qn = connection.ops.quote_name
    delivery_table, message_table = qn(Delivery._meta.db_table), qn(Message._meta.db_table)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH r AS (
                    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[], %s::text[],
                                         %s::text[], %s::text[], %s::timestamptz[])
                        AS r(id, claim, status, attempts, name, error_code, error_detail, next_attempt_at)
                ), d AS (
                    UPDATE {delivery_table} d SET
                        status = r.status, attempts = r.attempts, claim = '', claimed_until = NULL,
                        sent_at = CASE WHEN r.name IS NULL THEN d.sent_at ELSE %s END,
                        fcm_message_name = COALESCE(r.name, d.fcm_message_name),
                        error_code = r.error_code, error_detail = r.error_detail,
                        next_attempt_at = COALESCE(r.next_attempt_at, d.next_attempt_at)
                    FROM r WHERE d.id = r.id AND d.claim = r.claim
                    RETURNING d.id, d.status
                ), m AS (
                    UPDATE {message_table} SET
                        {answered} = {answered}
                            + (SELECT count(*) FROM d WHERE status IN ('sent', 'validated')),
                        failed_count = failed_count + (SELECT count(*) FROM d WHERE status = 'failed')
                    WHERE id = %s AND EXISTS (SELECT 1 FROM d WHERE status <> 'retrying')
                )
                SELECT id FROM d
                """,  # noqa: S608
                [*(list(column) for column in zip(*rows, strict=True)), now, message.pk],
            )
            return {pk for (pk,) in cursor.fetchall()}
    held: set[int] = set()
    at = connection.ops.adapt_datetimefield_value
    per_statement = max(1, ((connection.features.max_query_params or 999) - 1) // 8)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            cursor.execute(
                f"""
                UPDATE {delivery_table} AS d SET
                    status = r.column3, attempts = r.column4, claim = '', claimed_until = NULL,
                    sent_at = CASE WHEN r.column5 IS NULL THEN d.sent_at ELSE %s END,
                    fcm_message_name = COALESCE(r.column5, d.fcm_message_name),
                    error_code = r.column6, error_detail = r.column7,
                    next_attempt_at = COALESCE(r.column8, d.next_attempt_at)
                FROM (VALUES {", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(batch))}) AS r
                WHERE d.id = r.column1 AND d.claim = r.column2
                RETURNING id
                """,  # noqa: S608
                [at(now), *(v for row in batch for v in (*row[:7], at(row[7]) if row[7] else None))],
            )
            held.update(pk for (pk,) in cursor.fetchall())
    written = {d.pk: d.status for d in deliveries if d.pk in held}
    answers = sum(
        1 for status in written.values() if status in (Delivery.Status.SENT, Delivery.Status.VALIDATED)
    )
    failures = sum(1 for status in written.values() if status == Delivery.Status.FAILED)
    if answers or failures:
        Message.objects.filter(pk=message.pk).update(
            **{answered: F(answered) + answers}, failed_count=F("failed_count") + failures
        )
    return held


def _schedule_retries(message: Message, first_device_id, last_device_id) -> None:
    """Queue the message's next retry, when its soonest retrying delivery falls due.

    Only deliveries nobody holds count: a live worker's claim is that worker's to finish,
    and a dead worker's is herald_beat's to recover once it runs out. The retry is one
    message-wide task, queued only if none is queued already (see `_queue_message_task`).
    """
    now = timezone.now()
    pending = message.deliveries.unfinished().unclaimed(now)
    if first_device_id is not None:
        pending = pending.filter(device_id__gte=first_device_id, device_id__lte=last_device_id)
    soonest = pending.aggregate(at=Min("next_attempt_at"))["at"]
    if soonest is not None:
        _queue_message_task(message.pk, run_after=soonest)


def _queue_message_task(
    message_id: int, *, due_signal: Signal = send_due, run_after: datetime | None = None
) -> bool:
    """Queue a message-wide task (a send by default, or with `due_signal=fan_out_due` its
    fan-out) at `run_after` (None or past: now), unless one is queued already.

    Message.task_due_at is the slot: taken with a conditional UPDATE when it is empty, when
    the task already queued is due later than this one, or when it is stale (due more than
    DELIVERY_CLAIM_SECONDS ago: the queue lost it). The task frees it as it starts. Never
    queues a task with a run_after in the past: those would jump the queue. Returns
    whether a task was queued.
    """
    now = timezone.now()
    due = run_after if run_after is not None and run_after > now else now
    stale = now - timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS)
    slot = Message.objects.filter(pk=message_id).filter(
        Q(task_due_at__isnull=True) | Q(task_due_at__gt=due) | Q(task_due_at__lt=stale)
    )
    previous = slot.values_list("task_due_at", flat=True).first()
    if not slot.filter(Q(task_due_at=previous) if previous else Q(task_due_at__isnull=True)).update(
        task_due_at=due
    ):
        return False
    if not _queued(due_signal, message_id=message_id, run_after=due if due > now else None, rank=RETRY_RANK):
        # Not queued (a backend that cannot defer): leave the slot to herald_beat's recovery.
        Message.objects.filter(pk=message_id, task_due_at=due).update(task_due_at=previous)
        return False
    return True


def _free_task_slot(message_id: int, now: datetime) -> None:
    # A little slack for clocks that differ between the queue and this worker.
    Message.objects.filter(pk=message_id, task_due_at__lte=now + timedelta(seconds=5)).update(
        task_due_at=None
    )


def _wait_for_credential(message: Message, first_device_id, last_device_id, error: fcm.FcmError) -> None:
    """A credential that cannot be read now but can be put right: postpone, never burn, the sends.

    The due deliveries wait `error.retry_after` (no attempt counted) and are tried again;
    only those the message's TTL would outlive fail.
    """
    retry_at = timezone.now() + timedelta(seconds=error.retry_after or CONFIGURATION_RETRY_SECONDS)
    log.error(
        "deliveries of message %s wait: %s",
        message.pk,
        error.detail,
        extra={
            "message_id": message.pk,
            "tenant": message.tenant.tenant_id,
            "error": error.code,
            "detail": error.detail,
        },
    )
    if retry_at >= message.deadline:
        _fail_unsent(message, code=error.code, detail=error.detail)
        return
    pending = message.deliveries.unfinished().unclaimed(timezone.now())
    if first_device_id is not None:
        pending = pending.filter(device_id__gte=first_device_id, device_id__lte=last_device_id)
    pending.filter(
        next_attempt_at__lt=retry_at
    ).update(  # the task that was queued for them ran: no QUEUED mark
        next_attempt_at=retry_at,
        error_code=error.code,
        error_detail=error.detail[:2000],
        claim="",
        claimed_until=None,
    )
    _schedule_retries(message, first_device_id, last_device_id)


def _fail_unsent(message: Message, *, code: str, detail: str) -> None:
    with transaction.atomic():
        failed = message.deliveries.unfinished().update(
            status=Delivery.Status.FAILED,
            error_code=code,
            error_detail=detail[:2000],
            claim="",
            claimed_until=None,
        )
        Message.objects.filter(pk=message.pk).update(
            failed_count=F("failed_count") + failed, error=detail[:2000]
        )
    metrics.record_deliveries(tenant_id=message.tenant.tenant_id, failed={code: failed})
    finalize_if_done(message_id=message.pk)


def finalize_if_done(*, message_id: int) -> None:
    """Close a sending message once it is fanned out and no delivery is left to send.

    One conditional UPDATE, which every send task ends with: it changes nothing (and costs
    one statement) while deliveries are left.
    """
    now = timezone.now()
    status = Case(
        When(failed_count=0, then=Value(Message.Status.COMPLETED)),
        When(sent_count=0, validated_count=0, then=Value(Message.Status.FAILED)),
        default=Value(Message.Status.COMPLETED_WITH_FAILURES),
    )
    unfinished = Delivery.objects.unfinished().filter(message_id=OuterRef("pk"))
    with transaction.atomic():
        if (
            Message.objects.filter(pk=message_id, status=Message.Status.SENDING, fanned_out_at__isnull=False)
            .exclude(Exists(unfinished))
            .update(status=status, completed_at=now)
        ):
            closed = Message.objects.values("status", "tenant_id").get(pk=message_id)
            message_completed.send(
                sender=Message,
                message_id=message_id,
                tenant_id=closed["tenant_id"],
                status=closed["status"],
                at=now,
            )


# --- Opens, hygiene, recovery --------------------------------------------------------


def record_open(*, tenant: Tenant, tracking_token: str) -> bool:
    """Mark a delivery opened, once. Returns False when no such delivery is in the tenant."""
    delivery_id = delivery_id_of(tracking_token)
    if delivery_id is not None:  # a derived token: found by the id it carries
        found = Delivery.objects.filter(pk=delivery_id)
    elif tracking_token:  # a token stored before tokens were derived
        found = Delivery.objects.filter(stored_tracking_token=tracking_token)
    else:
        return False
    delivery = found.filter(message__tenant=tenant).only("pk", "message_id").first()
    if delivery is None:
        return False
    now = timezone.now()
    with transaction.atomic():
        if Delivery.objects.filter(pk=delivery.pk, opened_at__isnull=True).update(opened_at=now):
            Message.objects.filter(pk=delivery.message_id).update(opened_count=F("opened_count") + 1)
            push_opened.send(sender=Delivery, tenant_id=tenant.pk, delivery_id=delivery.pk, at=now)
    return True


def recover_stalled(*, grace: timedelta | None = None) -> dict[str, int]:
    """Nudge work whose task was lost: a worker died, or the queue lost a job.

    Due scheduled messages start; a fan-out that never finished runs again; due
    deliveries that nobody has claimed (or whose claim ran out) are queued again, a chunk
    per task (`_resume_stalled_deliveries`).
    """
    now = timezone.now()
    if grace is None:
        grace = timedelta(seconds=settings.DELIVERY_RECOVERY_GRACE_SECONDS)
    counts = Counter()
    for pk in Message.objects.filter(
        status=Message.Status.SCHEDULED, schedule_at__lte=now - grace
    ).values_list("pk", flat=True):
        if _queue_message_task(pk, due_signal=fan_out_due):
            counts["scheduled"] += 1
    for pk in (
        Message.objects.filter(
            status=Message.Status.SENDING, fanned_out_at__isnull=True, started_at__lte=now - grace
        )
        .exclude(
            ab_test__test_sent_at__isnull=False,
            ab_test__winner__isnull=True,  # waiting for its winner
        )
        .values_list("pk", flat=True)
    ):
        if _queue_message_task(pk, due_signal=fan_out_due):
            counts["fan_outs"] += 1
    stalled = (
        Delivery.objects.unfinished()
        .filter(message__status=Message.Status.SENDING, next_attempt_at__lte=now - grace)
        .unclaimed(now)
        .exclude(claim=QUEUED, claimed_until__gte=now - timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS))
        .values_list("message_id", flat=True)
        .distinct()
    )
    for message_id in stalled:
        if queued := _resume_stalled_deliveries(message_id, now=now, grace=grace):
            counts["messages_resumed"] += 1
            counts["sends_queued"] += queued
    for pk in Message.objects.filter(status=Message.Status.SENDING, fanned_out_at__isnull=False).values_list(
        "pk", flat=True
    ):
        finalize_if_done(message_id=pk)
    return dict(counts)


# The claim of deliveries whose send task was queued (by the fan-out, or by herald_beat
# resuming them), claimed_until the moment it was (just before: already past, so any worker
# may claim them, even at a frozen clock), while herald_beat's later passes leave them to
# that task for DELIVERY_CLAIM_SECONDS (as long as a worker's claim lasts).
QUEUED = "queued"
QUEUED_BEFORE = timedelta(microseconds=1)


def _resume_stalled_deliveries(message_id: int, *, now: datetime, grace: timedelta | None = None) -> int:
    """Queue sends for a message's stalled deliveries, at most a chunk per task; how many.

    Stalled: due more than `grace` ago and held by nobody (a dead worker's claim ran out, or
    the queue lost the task). Each send covers the device-id range of FANOUT_CHUNK_SIZE of
    them and ranks as fan_out ranks a message's chunks, from RETRY_RANK: behind every
    message's first chunk, so a big stalled message goes back to the queue between chunks
    and another tenant's new message goes first. A message-wide task would send all that
    is left in one go, holding a worker for as long.

    The deliveries queued are marked (QUEUED): a later pass finding them still waiting in
    a busy queue adds nothing, until DELIVERY_CLAIM_SECONDS have passed (then the queue is
    taken to have lost the sends). A message whose message-wide task is queued and due (a
    retry, a fan-out's continuation) is left to it. Deliveries of no device (a topic or a
    condition, or a removed device's) can only go in a message-wide task.
    """
    if grace is None:
        grace = timedelta(seconds=settings.DELIVERY_RECOVERY_GRACE_SECONDS)
    stale = now - timedelta(seconds=settings.DELIVERY_CLAIM_SECONDS)
    if Message.objects.filter(pk=message_id, task_due_at__lte=now, task_due_at__gte=stale).exists():
        return 0  # its message-wide task, due, takes them
    stalled = (
        Delivery.objects.unfinished()
        .unclaimed(now)
        .filter(message_id=message_id, next_attempt_at__lte=now - grace)
        .exclude(claim=QUEUED, claimed_until__gte=stale)
    )
    queued = 0
    if stalled.filter(device__isnull=True).exists() and _queue_message_task(message_id):
        queued += 1
    # The UPDATE takes them: of two passes at once, each marks (and queues) its own.
    if not stalled.filter(device__isnull=False).update(claim=QUEUED, claimed_until=now):
        return queued
    resumed = Delivery.objects.filter(message_id=message_id, claim=QUEUED, claimed_until=now)
    # A chunk no backend queues (nothing listens) loses its mark: the next pass tries again.
    sends = sum(
        _queue_chunk(message_id, first_device_id=first, last_device_id=last, rank=rank, marked=resumed)
        for rank, (first, last) in enumerate(_chunk_ranges(resumed), start=RETRY_RANK)
    )
    return queued + sends


def _chunk_ranges(deliveries) -> list[tuple[int, int]]:
    """(first, last) device ids of each FANOUT_CHUNK_SIZE of these deliveries, in device order:
    one query, whatever their number."""
    numbered = deliveries.filter(device__isnull=False).annotate(
        place=Window(RowNumber(), order_by=F("device_id").asc())
    )
    sql, params = numbered.values_list("device_id", "place").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(device_id), max(device_id) FROM ({sql}) numbered "  # noqa: S608
            "GROUP BY (place - 1) / %s ORDER BY 1",
            [*params, max(1, settings.FANOUT_CHUNK_SIZE)],
        )
        return cursor.fetchall()
