"""Saving, changing and deleting segments. Rules are checked (audiences.rules.parse) first."""

from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from audiences import rules as rule_doc
from audiences.models import Segment

# Sent (with `segment`) inside the deleting transaction, the segment's row locked. A higher
# room that still needs the segment (messaging: a draft or scheduled message aimed at it)
# raises SegmentInUse to refuse; audiences never imports it.
segment_deleting = Signal()


class SegmentError(Exception):
    """A segment that cannot be saved or deleted as asked."""


class DuplicateName(SegmentError):
    pass


class SegmentInUse(SegmentError):
    """Something still needs this segment; `users` names what (e.g. "message 12")."""

    def __init__(self, message: str, *, users: list[str]):
        super().__init__(message)
        self.users = users


def create_segment(*, tenant, name: str, rules, description: str = "", by=None) -> Segment:
    """Save a new segment; raises RuleError for bad rules, DuplicateName for a taken name."""
    parsed = rule_doc.parse(rules)
    segment = Segment(
        tenant=tenant, name=name, description=description, rules=parsed, created_by=by, updated_by=by
    )
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError:
        raise DuplicateName(f"A segment named {name!r} exists already.") from None
    return segment


def update_segment(*, segment: Segment, by=None, **changes) -> Segment:
    """Change a segment's name, description or rules (checked first); raises as create_segment."""
    if "rules" in changes:
        changes["rules"] = rule_doc.parse(changes["rules"])
    for field, value in changes.items():
        if field not in ("name", "description", "rules"):
            raise TypeError(f"a segment has no changeable field {field!r}")
        setattr(segment, field, value)
    segment.updated_at, segment.updated_by = timezone.now(), by
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError:
        raise DuplicateName(f"A segment named {segment.name!r} exists already.") from None
    return segment


def delete_segment(*, segment: Segment) -> None:
    """Delete a segment, unless a listener to segment_deleting refuses (SegmentInUse)."""
    with transaction.atomic():
        locked = Segment.objects.select_for_update().filter(pk=segment.pk).first()
        if locked is None:
            return
        segment_deleting.send(Segment, segment=locked)
        locked.delete()
