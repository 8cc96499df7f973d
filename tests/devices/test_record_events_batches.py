"""herald_record_events (migration devices 0010) leaves the rows and answers that applying its
documents one by one through herald_record_event would, skipping stored fingerprints.

Random batches (seeded: the same every run) over a small world, so that they meet every case:
tokens repeated in a batch, named and anonymous users, new and known devices, deactivated
devices, retries of stored events and repeats inside the batch, a user named on one device then
on another, several tenants in one batch, request times out of order and a minute apart.
"""

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DataError, connection, transaction

from devices import ingest, services
from devices.models import AppUser, Device, Event
from tenants.models import Tenant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

BASE = datetime(2026, 11, 30, 12, tzinfo=UTC)
NAMED = ["ann", "bob", "cem", "dee", "eda"]
LANGUAGES = [("tr", "TR", "Europe/Istanbul"), ("en", "GB", "Europe/London")]


class Rollback(Exception):
    pass


def world(rng: random.Random, tenants: list[Tenant]) -> dict[int, list[str]]:
    """Users and devices as they are before the batch; returns each tenant's token pool."""
    pools = {}
    for tenant in tenants:
        tokens = [f"t{tenant.pk}-{i}" for i in range(rng.randint(2, 8))]
        pools[tenant.pk] = tokens
        users = {}
        for name in rng.sample(NAMED, rng.randint(0, len(NAMED))):
            language, country, zone = rng.choice(LANGUAGES)
            seen = BASE - timedelta(seconds=rng.randint(0, 150))
            users[name] = AppUser.objects.create(
                tenant=tenant,
                app_user_id=name,
                language=language,
                country=country,
                timezone=zone,
                first_seen_at=seen - timedelta(days=3),
                last_seen_at=seen,
            )
        for token in tokens:
            if rng.random() < 0.35:
                continue  # a device the batch may create
            if users and rng.random() < 0.6:
                user = rng.choice(list(users.values()))
            else:
                language, country, zone = rng.choice(LANGUAGES)
                user = AppUser.objects.create(
                    tenant=tenant,
                    app_user_id=services.anonymous_user_id(tenant=tenant, token=token),
                    is_anonymous=True,
                    language=language,
                    country=country,
                    timezone=zone,
                    last_seen_at=BASE - timedelta(seconds=rng.randint(0, 150)),
                )
            active = rng.random() < 0.75
            Device.objects.create(
                tenant=tenant,
                user=user,
                token=token,
                platform=rng.choice(["android", "ios"]),
                push_permission=rng.random() < 0.7,
                token_kind=rng.choice(["registration", "fid"]),
                last_session_id=rng.choice(["s1", "s2"]),
                is_active=active,
                deactivated_at=None if active else BASE - timedelta(days=1),
                deactivation_reason="" if active else "UNREGISTERED",
                created_at=BASE - timedelta(days=5),
                last_seen_at=BASE - timedelta(seconds=rng.randint(0, 150)),
                token_updated_at=BASE - timedelta(days=5),
            )
    return pools


def batch(rng: random.Random, tenants: list[Tenant], pools: dict[int, list[str]]) -> list[dict]:
    documents = []
    now = BASE
    for n in range(rng.randint(1, 30)):
        if documents and rng.random() < 0.08:
            documents.append(rng.choice(documents))  # the same entry again in the batch
            continue
        tenant = rng.choice(tenants)
        token = rng.choice(pools[tenant.pk])
        now += timedelta(seconds=rng.choice([0, 1, 5, 20, 60, 61, 75]) - (3 if rng.random() < 0.1 else 0))
        language, country, zone = rng.choice(LANGUAGES)
        event = services.EventInput(
            event_name=rng.choice(["open", "view"]),
            event_time=now - timedelta(seconds=rng.choice([0, 1])),
            device_token=token,
            platform=rng.choice(["android", "ios"]),
            push_permission_granted=rng.random() < 0.7,
            timezone=zone,
            language=language,
            country=country,
            session_id=rng.choice(["s1", "s2"]),
            app_user_id=rng.choice(["", *NAMED]),
            params={"n": n % 3},
            token_kind=rng.choice(["registration", "registration", "fid"]),
        )
        documents.append(ingest.document_of(tenant=tenant, event=event, now=now))
    return documents


def store_some(rng: random.Random, documents: list[dict]) -> None:
    """Some of the batch's events are stored already (a writer that died before acknowledging,
    a client's retry written directly)."""
    for document in documents:
        if rng.random() < 0.12:
            device = Device.objects.filter(tenant_id=document["tenant"]).first()
            if device is None or Event.objects.filter(fingerprint=document["fingerprint"]).exists():
                continue
            Event.objects.create(
                tenant_id=document["tenant"],
                user_id=device.user_id,
                device=device,
                name="stored",
                occurred_at=BASE,
                received_at=BASE,
                fingerprint=document["fingerprint"],
            )


def lock_keys(documents: list[dict], tenants: dict[int, Tenant]) -> list[int]:
    keys = set()
    for document in documents:
        keys.update(
            services._lock_keys(tenant=tenants[document["tenant"]], token_hashes=[document["token_hash"]])
        )
    return sorted(keys)


def one_by_one(documents: list[dict]) -> list[int]:
    """The reference: each document in order through herald_record_event, unless stored."""
    applied = []
    with connection.cursor() as cursor:
        for position, document in enumerate(documents):
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM devices_event WHERE tenant_id = %s AND fingerprint = %s)",
                [document["tenant"], document["fingerprint"]],
            )
            if cursor.fetchone()[0]:
                continue
            cursor.execute(services.RECORD_EVENT_SQL, [[], json.dumps(document)])
            applied.append(position)
    return applied


def as_batch(documents: list[dict], keys: list[int]) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT applied FROM herald_record_events(%s::bigint[], %s::jsonb) AS applied",
            [keys, json.dumps(documents)],
        )
        return [row[0] for row in cursor.fetchall()]


def rows(tenant_ids: list[int], before: dict[str, int]) -> dict:
    """Every row of these tenants by its natural key (ids differ between the two runs), and the
    order in which the rows made since `before` were numbered."""
    users = {
        (u.tenant_id, u.app_user_id): (
            u.is_anonymous,
            u.language,
            u.country,
            u.timezone,
            u.first_seen_at,
            u.last_seen_at,
        )
        for u in AppUser.objects.filter(tenant_id__in=tenant_ids)
    }
    devices = {
        (d.tenant_id, d.token_hash): (
            d.token,
            d.user.app_user_id,
            d.token_kind,
            d.platform,
            d.push_permission,
            d.is_active,
            d.deactivated_at,
            d.deactivation_reason,
            d.last_session_id,
            d.created_at,
            d.last_seen_at,
            d.token_updated_at,
        )
        for d in Device.objects.filter(tenant_id__in=tenant_ids).select_related("user")
    }
    events = {
        (e.tenant_id, e.fingerprint): (
            e.user.app_user_id,
            e.device.token_hash if e.device else None,
            e.name,
            e.occurred_at,
            e.received_at,
            e.session_id,
            e.params,
        )
        for e in Event.objects.filter(tenant_id__in=tenant_ids).select_related("user", "device")
    }
    order = {
        "users": list(
            AppUser.objects.filter(tenant_id__in=tenant_ids, pk__gt=before["users"])
            .order_by("pk")
            .values_list("tenant_id", "app_user_id")
        ),
        "devices": list(
            Device.objects.filter(tenant_id__in=tenant_ids, pk__gt=before["devices"])
            .order_by("pk")
            .values_list("tenant_id", "token_hash")
        ),
        "events": list(
            Event.objects.filter(tenant_id__in=tenant_ids, pk__gt=before["events"])
            .order_by("pk")
            .values_list("tenant_id", "fingerprint")
        ),
    }
    return {"users": users, "devices": devices, "events": events, "order": order}


def high_water() -> dict[str, int]:
    return {
        "users": AppUser.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
        "devices": Device.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
        "events": Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
    }


def outcome(apply, documents: list[dict], tenant_ids: list[int]) -> tuple[list[int], dict]:
    """What `apply` answers and leaves, rolled back afterwards."""
    result = {}
    try:
        with transaction.atomic():
            before = high_water()
            result["applied"] = apply(documents)
            result["rows"] = rows(tenant_ids, before)
            raise Rollback
    except Rollback:
        pass
    return result["applied"], result["rows"]


@pytest.mark.parametrize("seed", range(12))
def test_a_random_batch_leaves_the_rows_and_answers_of_applying_it_one_by_one(seed):
    for case in range(15):
        rng = random.Random(seed * 1000 + case)
        with transaction.atomic():
            tenants = [
                Tenant.objects.create(name=f"T{seed}-{case}-{i}", tenant_id=f"t{seed}-{case}-{i}")
                for i in range(rng.choice([1, 1, 2]))
            ]
            pools = world(rng, tenants)
            documents = batch(rng, tenants, pools)
            store_some(rng, documents)
            by_pk = {tenant.pk: tenant for tenant in tenants}
            keys = lock_keys(documents, by_pk)
            tenant_ids = list(by_pk)

            expected = outcome(one_by_one, documents, tenant_ids)
            got = outcome(lambda docs, keys=keys: as_batch(docs, keys), documents, tenant_ids)

            assert got[0] == expected[0], f"seed {seed}, case {case}: positions"
            for part in ("users", "devices", "events", "order"):
                assert got[1][part] == expected[1][part], f"seed {seed}, case {case}: {part}"
            transaction.set_rollback(True)


def opened(tenant, *, fingerprint: str, language: str = "en", app_user_id: str = "") -> dict:
    """The document of an app_opened-like event of the token "tok" at BASE, fingerprint given."""
    event = services.EventInput(
        event_name="open",
        event_time=BASE,
        device_token="tok",
        platform="android",
        push_permission_granted=True,
        timezone="UTC",
        language=language,
        country="GB",
        session_id="s",
        app_user_id=app_user_id,
    )
    return {**ingest.document_of(tenant=tenant, event=event, now=BASE), "fingerprint": fingerprint}


def test_a_batch_of_nothing_new_applies_nothing(tenant):
    document = opened(tenant, fingerprint="f" * 32)
    keys = lock_keys([document], {tenant.pk: tenant})

    assert as_batch([document, document], keys) == [0]
    assert as_batch([document], keys) == []
    assert as_batch([], []) == []
    assert Event.objects.count() == 1 and Device.objects.count() == 1 and AppUser.objects.count() == 1


def test_a_value_the_database_refuses_fails_the_batch_even_if_a_later_document_overwrites_it(tenant):
    """As herald_record_event failed on writing it: the writer then applies the batch one document
    at a time and sends that one to the dead-letter stream (devices/ingest.py)."""

    documents = [
        opened(tenant, language="english", app_user_id="ann", fingerprint="a" * 32),
        opened(tenant, language="en", app_user_id="ann", fingerprint="b" * 32),
    ]
    keys = lock_keys(documents, {tenant.pk: tenant})

    for apply in (one_by_one, lambda docs: as_batch(docs, keys)):
        with pytest.raises(DataError), transaction.atomic():
            apply(documents)
    assert as_batch(documents[1:], keys) == [0]
