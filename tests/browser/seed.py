"""A month of believable activity for one tenant, so the pages have something to show."""

import random
from datetime import timedelta

from django.utils import timezone

from devices.models import AppUser, Device, Event, TokenRotation
from messaging.models import Delivery, Message

COUNTRIES = ["TR", "DE", "US", "GB", "FR"]
LANGUAGES = {"TR": "tr", "DE": "de", "US": "en", "GB": "en", "FR": "fr"}
TITLES = [
    ("Your order is on its way", "Arriving today between 2 and 4 pm."),
    ("Flash sale: 30 % off shoes", "Only until midnight. Tap to see the picks."),
    ("New message from Ayşe", "Are we still on for Saturday?"),
    ("Weekly summary", "You walked 42 km this week, 8 % more than last week."),
    ("Your subscription renews soon", "It renews on 1 December; manage it in Settings."),
]


def fcm_token(rng) -> str:
    """Something shaped like an FCM registration token."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choices(alphabet, k=22)) + ":APA91b" + "".join(rng.choices(alphabet, k=134))


def seed_activity(tenant, *, days: int = 30, devices: int = 48, seed: int = 7) -> list[Device]:
    rng = random.Random(seed)
    now = timezone.now()
    made = []
    for i in range(devices):
        country = COUNTRIES[i % len(COUNTRIES)]
        user, _ = AppUser.objects.get_or_create(
            tenant=tenant,
            app_user_id=f"user_{i // 2:03d}",
            defaults={"country": country, "language": LANGUAGES[country], "timezone": "Europe/Istanbul"},
        )
        platform = ["android", "android", "ios", "web"][i % 4]
        created = now - timedelta(days=rng.randint(days, days + 60))
        made.append(
            Device.objects.create(
                tenant=tenant,
                user=user,
                token=fcm_token(rng),
                platform=platform,
                push_permission=i % 7 != 0,
                created_at=created,
                last_seen_at=now - timedelta(hours=rng.randint(1, 200)),
            )
        )
    for device in made[:40]:
        for _ in range(rng.randint(1, 5)):
            Event.objects.create(
                tenant=tenant,
                user=device.user,
                device=device,
                name=rng.choice(["app_opened", "purchase", "view"]),
                occurred_at=now - timedelta(hours=rng.randint(1, 24 * days)),
                session_id=f"s-{rng.randint(1, 999)}",
                params={"screen": rng.choice(["home", "cart", "profile"])},
                fingerprint=f"{device.pk}-{rng.random()}",
            )
    for device in rng.sample(made, 14):
        when = now - timedelta(days=rng.randint(0, days - 1), hours=rng.randint(0, 23))
        TokenRotation.objects.create(
            device=device,
            old_token=device.token,
            old_token_hash="-" * 64,
            new_token=fcm_token(rng),
            rotated_at=when,
        )
    for device in rng.sample(made[8:], 6):
        device.deactivate(reason=rng.choice(["UNREGISTERED", "UNREGISTERED", "stale", "SENDER_ID_MISMATCH"]))
        Device.objects.filter(pk=device.pk).update(
            deactivated_at=now - timedelta(days=rng.randint(0, days - 1))
        )

    for n in range(14):
        title, body = TITLES[n % len(TITLES)]
        created = now - timedelta(days=days - 1 - n * 2, hours=rng.randint(0, 6))
        targets = rng.sample(made, rng.randint(12, len(made)))
        message = Message.objects.create(
            tenant=tenant,
            title=title,
            body=body,
            source=Message.Source.ADMIN,
            created_at=created,
            started_at=created,
            fanned_out_at=created,
            completed_at=created + timedelta(minutes=2),
            status=Message.Status.COMPLETED,
            targeted_count=len(targets),
        )
        sent = failed = opened = 0
        rows = []
        for device in targets:
            ok = rng.random() > 0.08
            opened_at = created + timedelta(hours=rng.randint(0, 30)) if ok and rng.random() < 0.35 else None
            rows.append(
                Delivery(
                    message=message,
                    device=device,
                    attempts=1,
                    next_attempt_at=created,
                    status=Delivery.Status.SENT if ok else Delivery.Status.FAILED,
                    sent_at=created + timedelta(seconds=rng.randint(1, 90)) if ok else None,
                    error_code=""
                    if ok
                    else rng.choice(["UNREGISTERED", "UNREGISTERED", "QUOTA_EXCEEDED", "INVALID_ARGUMENT"]),
                    error_detail="" if ok else "Requested entity was not found.",
                    opened_at=opened_at,
                )
            )
            sent, failed, opened = sent + ok, failed + (not ok), opened + bool(opened_at)
        Delivery.objects.bulk_create(rows)
        Message.objects.filter(pk=message.pk).update(
            sent_count=sent,
            failed_count=failed,
            opened_count=opened,
            status=Message.Status.COMPLETED_WITH_FAILURES if failed else Message.Status.COMPLETED,
        )
    Message.objects.create(
        tenant=tenant,
        title="Black Friday starts now",
        body="Everything 40 % off until Sunday.",
        status=Message.Status.SCHEDULED,
        schedule_at=now + timedelta(days=3),
        source=Message.Source.ADMIN,
    )
    return made
