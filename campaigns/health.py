"""A campaign's health: an integer 0–100 in four bands, and the parts that made it.

The formula (README, Campaigns → Health score), 100 points in four parts:

- delivery (40): FCM accepted / (accepted + failed). 40 at 98 % or more, 0 at 80 % or less,
  linear between.
- opens (35): the open rate (opened / accepted) against the tenant's median open rate over its
  recent messages (campaign sends included). 35 at 1.2× the median or better, linear down to
  0 at no opens. With no median to compare with (too few messages), 5 % stands in for it.
- active recipients (15): the share of users reached who were seen in the last 30 days.
  15 at 80 % or more, 0 at 20 % or less.
- skips (10): users skipped (cooldown, cap, quiet hours, …) / (reached + skipped).
  10 with none, 0 at 50 % or more.

Bands: Excellent ≥ 80, Good ≥ 60, Needs work ≥ 40, Critical below. Under MIN_SENT users reached
(or MIN_DELIVERED accepted pushes) the campaign has too little data: no score, and it says so.

`score` is pure (every input given); `score_campaign` reads the inputs from the database.
"""

import statistics
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.utils import timezone

MIN_SENT = 50
MIN_DELIVERED = 30
FALLBACK_MEDIAN_OPEN_RATE = 0.05
# The tenant's median: its messages of the last 90 days that reached at least 20 devices.
MEDIAN_WINDOW = timedelta(days=90)
MEDIAN_MIN_SENT = 20
MEDIAN_MIN_MESSAGES = 3
ACTIVE_WINDOW = timedelta(days=30)

WEIGHTS = {"delivery": 40, "opens": 35, "active": 15, "skips": 10}
BANDS = [(80, "Excellent"), (60, "Good"), (40, "Needs work"), (0, "Critical")]
TOO_LITTLE = "Too little data"


@dataclass(frozen=True)
class HealthInputs:
    sent: int  # users the campaign's sends went to
    delivered: int  # pushes FCM accepted
    failed: int  # pushes FCM refused
    opened: int
    skipped: int  # users skipped, every reason
    active_recipients: int  # users reached who were seen in the last 30 days
    tenant_median_open_rate: float | None  # None: too few messages to have one


@dataclass
class Health:
    score: int | None
    band: str
    parts: list[dict] = field(default_factory=list)
    summary: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def css(self) -> str:
        """A class name for the band's colour."""
        return {
            "Excellent": "excellent",
            "Good": "good",
            "Needs work": "needs-work",
            "Critical": "critical",
        }.get(self.band, "unknown")


def _ramp(value: float, zero: float, full: float) -> float:
    """0 at `zero`, 1 at `full`, linear between, clamped."""
    if full == zero:
        return 1.0 if value >= full else 0.0
    return max(0.0, min(1.0, (value - zero) / (full - zero)))


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def band_of(score: int) -> str:
    return next(name for floor, name in BANDS if score >= floor)


def score(inputs: HealthInputs) -> Health:
    """The score, its band and its parts, from the given figures."""
    attempts = inputs.delivered + inputs.failed
    if inputs.sent < MIN_SENT or inputs.delivered < MIN_DELIVERED:
        return Health(
            score=None,
            band=TOO_LITTLE,
            summary=f"Too little data: {inputs.sent} users reached and {inputs.delivered} pushes delivered; "
            f"a score needs at least {MIN_SENT} and {MIN_DELIVERED}.",
        )
    parts = []

    delivery = inputs.delivered / attempts if attempts else 0.0
    points = WEIGHTS["delivery"] * _ramp(delivery, 0.80, 0.98)
    parts.append(
        _part(
            "delivery",
            points,
            f"delivery rate {_pct(delivery)}"
            + (" is healthy" if delivery >= 0.98 else " is low: remove stale tokens and check the credential")
            + f" ({inputs.failed:,} failed)",
        )
    )

    open_rate = inputs.opened / inputs.delivered if inputs.delivered else 0.0
    median = inputs.tenant_median_open_rate
    benchmark = median if median else FALLBACK_MEDIAN_OPEN_RATE
    points = WEIGHTS["opens"] * _ramp(open_rate, 0.0, 1.2 * benchmark)
    against = (
        f"the tenant's median {_pct(benchmark)}"
        if median
        else f"the {_pct(benchmark)} benchmark (no median yet)"
    )
    relation = "is above" if open_rate > benchmark else ("matches" if open_rate == benchmark else "is below")
    parts.append(_part("opens", points, f"open rate {_pct(open_rate)} {relation} {against}"))

    active = inputs.active_recipients / inputs.sent
    points = WEIGHTS["active"] * _ramp(active, 0.20, 0.80)
    parts.append(
        _part(
            "active",
            points,
            f"{_pct(active)} of recipients were active in the last 30 days"
            + ("" if active >= 0.8 else ": narrow the audience to recent users"),
        )
    )

    considered = inputs.sent + inputs.skipped
    skip_rate = inputs.skipped / considered if considered else 0.0
    points = WEIGHTS["skips"] * (1 - _ramp(skip_rate, 0.0, 0.5))
    parts.append(
        _part(
            "skips",
            points,
            f"{_pct(skip_rate)} of the audience was skipped"
            + ("" if skip_rate < 0.1 else " (cooldown, cap, quiet hours…: see skipped by reason)"),
        )
    )

    total = round(sum(p["points"] for p in parts))
    total = max(0, min(100, total))
    worst = min(parts, key=lambda p: p["points"] / p["max"])
    return Health(score=total, band=band_of(total), parts=parts, summary=worst["text"])


def _part(name: str, points: float, text: str) -> dict:
    limit = WEIGHTS[name]
    return {
        "name": name,
        "points": round(points, 1),
        "max": limit,
        "ok": points >= 0.75 * limit,
        "text": text[0].upper() + text[1:],
    }


# --- From the database ------------------------------------------------------------------------


def tenant_median_open_rate(tenant, *, now=None) -> float | None:
    """The median open rate of the tenant's recent messages that reached enough devices."""
    from messaging.models import Message

    now = now or timezone.now()
    rates = [
        opened / sent
        for sent, opened in Message.objects.filter(
            tenant=tenant, created_at__gte=now - MEDIAN_WINDOW, sent_count__gte=MEDIAN_MIN_SENT, dry_run=False
        )
        .order_by("-created_at")
        .values_list("sent_count", "opened_count")[:1000]
    ]
    if len(rates) < MEDIAN_MIN_MESSAGES:
        return None
    return statistics.median(rates)


def inputs_for(campaign, *, stats: dict | None = None, now=None, medians: dict | None = None) -> HealthInputs:
    """The score's figures for a campaign, from services.campaign_stats and the users reached."""
    from campaigns import services
    from campaigns.models import CampaignRecipient
    from devices.models import AppUser

    now = now or timezone.now()
    stats = stats if stats is not None else services.campaign_stats(campaign)
    reached = CampaignRecipient.objects.filter(campaign=campaign, state=CampaignRecipient.State.SENT)
    active = AppUser.objects.filter(
        pk__in=reached.values("user_id"), last_seen_at__gte=now - ACTIVE_WINDOW
    ).count()
    return HealthInputs(
        sent=int(stats.get("users_sent") or 0),
        delivered=int(stats.get("sent") or 0),
        failed=int(stats.get("failed") or 0),
        opened=int(stats.get("opened") or 0),
        skipped=int(stats.get("users_skipped") or 0),
        active_recipients=active,
        tenant_median_open_rate=_median(campaign, now=now, medians=medians),
    )


def _median(campaign, *, now, medians: dict | None) -> float | None:
    """The tenant's median, once per tenant when a page scores many campaigns (`medians`)."""
    if medians is None:
        return tenant_median_open_rate(campaign.tenant, now=now)
    if campaign.tenant_id not in medians:
        medians[campaign.tenant_id] = tenant_median_open_rate(campaign.tenant, now=now)
    return medians[campaign.tenant_id]


def score_campaign(campaign, *, stats: dict | None = None, now=None, medians: dict | None = None) -> Health:
    """The campaign's health now (`medians`: a dict to share tenant medians across calls)."""
    return score(inputs_for(campaign, stats=stats, now=now, medians=medians))
