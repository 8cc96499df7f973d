"""What messaging says when a lower room announces something (audiences.services signals)."""

from django.dispatch import receiver

from audiences.services import SegmentInUse, segment_deleting
from messaging.models import Audience, Message


@receiver(segment_deleting)
def refuse_deleting_a_segment_in_use(sender, *, segment, **kwargs):
    """A message not yet fanned out still needs its segment's rules: refuse, naming it.

    Refusing, not snapshotting: whoever deletes a segment learns which messages would lose
    their audience, and can cancel them or aim them elsewhere first.
    """
    waiting = (
        Message.objects.filter(
            tenant_id=segment.tenant_id,
            audience=Audience.SEGMENT,
            audience_params__segment_id=segment.pk,
            fanned_out_at__isnull=True,
        )
        .exclude(status__in=Message.FINAL)
        .order_by("pk")
        .values_list("pk", flat=True)[:10]
    )
    if waiting:
        names = [f"message {pk}" for pk in waiting]
        raise SegmentInUse(
            f"{segment.name!r} is the audience of {', '.join(names)}, not sent yet: "
            "cancel them or change their audience first.",
            users=names,
        )
