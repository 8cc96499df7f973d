"""A/B tests: choosing the winning variant and sending it to the rest of the audience.

The rules (README, "Variants"): once the wait is over, the variant with the best open rate
among the test group's sent deliveries wins; equal rates go to the lowest variant; with
fewer than `min_opens` opens in the whole test, the fallback variant (the staff's choice,
A unless set) wins. Staff may pick the winner by hand at any time before that. Either way
the winner is claimed by one conditional UPDATE, so two `herald_beat`s (or a beat and a
click) never send the rest twice; the rest's fan-out is then an ordinary, resumable one.
"""

import logging
from dataclasses import dataclass
from fractions import Fraction

from django.db.models import Count, Q
from django.utils import timezone

from messaging.models import AbTest, Delivery, Message
from messaging.services import MessagingError, fan_out_due

log = logging.getLogger("herald.delivery")


class NotDecidable(MessagingError):
    """The message has no A/B test waiting for a winner, or the variant does not exist."""


@dataclass(frozen=True)
class VariantTally:
    variant: int
    sent: int
    opened: int

    @property
    def open_rate(self) -> Fraction | None:
        return Fraction(self.opened, self.sent) if self.sent else None


def choose_winner(tallies: list[VariantTally], *, min_opens: int, fallback: int) -> tuple[int, str]:
    """The winning variant and why (an AbTest.Reason), from the test's figures."""
    if sum(t.opened for t in tallies) < max(min_opens, 1):
        return fallback, AbTest.Reason.TOO_FEW_OPENS
    rated = [t for t in tallies if t.open_rate is not None]
    best = max(t.open_rate for t in rated)
    leaders = sorted(t.variant for t in rated if t.open_rate == best)  # exact fractions: no float ties
    return leaders[0], (AbTest.Reason.TIE if len(leaders) > 1 else AbTest.Reason.BEST_RATE)


def tally_variants(message: Message) -> list[VariantTally]:
    """Sent and opened deliveries per variant so far (one GROUP BY), every variant listed."""
    rows = {
        row["variant"]: row
        for row in Delivery.objects.filter(message_id=message.pk)
        .values("variant")
        .annotate(
            sent=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            opened=Count("pk", filter=Q(opened_at__isnull=False)),
        )
        .order_by()
    }
    return [
        VariantTally(variant=i, sent=rows.get(i, {}).get("sent", 0), opened=rows.get(i, {}).get("opened", 0))
        for i in range(message.variant_count)
    ]


def decide_winner(*, message_id: int, variant: int | None = None, decided_by=None) -> AbTest:
    """Choose the winner of a message's A/B test (by the rules, or `variant` by hand) and
    queue the rest's fan-out. Raises NotDecidable when it is decided already, the message
    is not sending, or `variant` does not exist."""
    message = Message.objects.get(pk=message_id)
    ab_test = AbTest.objects.filter(message_id=message_id).first()
    if ab_test is None or message.status != Message.Status.SENDING:
        raise NotDecidable("Only a sending message with an A/B test has a winner to choose.")
    if ab_test.winner is not None:
        raise NotDecidable(f"Variant {label(ab_test.winner)} already won.")
    if variant is not None and not 0 <= variant < message.variant_count:
        raise NotDecidable(f"The message has variants A to {label(message.variant_count - 1)}.")
    tallies = tally_variants(message)
    if variant is None:
        winner, reason = choose_winner(
            tallies, min_opens=ab_test.min_opens, fallback=ab_test.fallback_variant
        )
    else:
        winner, reason = variant, AbTest.Reason.MANUAL
    now = timezone.now()
    # The claim: of two deciders, one matches the row.
    claimed = AbTest.objects.filter(pk=ab_test.pk, winner__isnull=True).update(
        winner=winner,
        reason=reason,
        decided_at=now,
        decided_by=decided_by,
        tally=[{"variant": t.variant, "sent": t.sent, "opened": t.opened} for t in tallies],
    )
    if not claimed:
        raise NotDecidable("The winner was chosen meanwhile.")
    log.info("A/B test decided", extra={"message_id": message_id, "winner": winner, "reason": reason})
    fan_out_due.send(Message, message_id=message_id, run_after=None)
    ab_test.refresh_from_db()
    return ab_test


def decide_due_winners() -> int:
    """Choose every winner whose wait is over (run by herald_beat and by the task queued for
    the moment); how many this call decided."""
    decided = 0
    due = AbTest.objects.filter(
        winner__isnull=True, decide_at__lte=timezone.now(), message__status=Message.Status.SENDING
    ).values_list("pk", flat=True)
    for message_id in due:
        try:
            decide_winner(message_id=message_id)
            decided += 1
        except NotDecidable:
            continue  # another beat, or a click, was first
    return decided


def label(variant: int) -> str:
    """A, B, C… as pages name variants."""
    return "ABCDE"[variant] if 0 <= variant < 5 else str(variant)
