"""Herald's clock: starts due scheduled messages, recovers stalled work, prunes stale devices and old rows."""

import logging
import time
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from devices.tasks import deactivate_stale_devices_task
from messaging.limits import prune_ledger
from messaging.services import recover_stalled
from messaging.signals import beat
from messaging.tasks import apply_retention_task
from messaging.variants import decide_due_winners

log = logging.getLogger("herald.beat")


class Command(BaseCommand):
    help = (
        "Run Herald's periodic work: start scheduled messages that are due, choose the winners "
        "of A/B tests whose wait is over, resume deliveries "
        "whose worker died, close finished messages, and once a day queue the deactivation of "
        "stale devices and the deletion of rows past their retention. "
        "Run one beside the workers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=15.0, help="seconds between passes")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, interval, once, **options):
        last_hygiene = None
        while True:
            if decided := decide_due_winners():
                log.info("chose the winners of %s A/B tests", decided)
            counts = recover_stalled()
            if counts:
                log.info("recovered stalled work %s", counts)
            if last_hygiene is None or timezone.now() - last_hygiene > timedelta(days=1):
                deactivate_stale_devices_task.enqueue()
                apply_retention_task.enqueue()
                prune_ledger()  # the frequency cap's counters of days that ended everywhere
                last_hygiene = timezone.now()
            beat.send(sender=self.__class__, now=timezone.now())
            if once:
                return
            time.sleep(interval)
            # As between two requests: drop connections the database closed meanwhile.
            close_old_connections()
