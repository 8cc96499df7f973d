"""Queued ingestion's writer: stores the events POST /events queued (EVENTS_INGEST=queue)."""

import logging
import signal
import threading
import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection

from devices import ingest

log = logging.getLogger("herald.ingest")


class Command(BaseCommand):
    help = (
        "Write the events POST /events queued in Redis (EVENTS_INGEST=queue) to the database, in "
        "batches of one transaction each, in the order they were accepted. Run one (a second one "
        "waits as a stand-by: one writer applies at a time). SIGTERM or SIGINT: the current batch "
        "is finished, then the command exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=500, help="entries per transaction (at most 5000)")
        parser.add_argument(
            "--block-ms", type=int, default=200, help="how long to wait for new entries when idle"
        )
        parser.add_argument("--once", action="store_true", help="one batch, then exit")
        parser.add_argument("--drain", action="store_true", help="until the stream is empty, then exit")

    def handle(self, *args, batch, block_ms, once, drain, **options):
        if not settings.REDIS_URL:
            raise CommandError("herald_ingest needs REDIS_URL (the queue is a Redis stream)")
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=5
        )
        consumer = ingest.Consumer(client=client, name=ingest.consumer_name(), batch=batch)
        stopping = []

        def stop(signum, frame):
            stopping.append(signum)

        previous = {}
        if threading.current_thread() is threading.main_thread():  # (tests run writers in threads)
            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        written = 0
        try:
            failures = 0
            while not stopping:
                try:
                    entries, newest = consumer.consume()
                    written += sum(entry.applied for entry in entries)
                    if once or (drain and not entries):
                        break
                    if len(entries) < consumer.batch and not stopping:
                        consumer.wait(after=newest, block_ms=block_ms)
                except (DatabaseError, redis.RedisError) as exc:
                    if once or drain:
                        raise
                    # A batch not acknowledged is taken over by the next pass (or another
                    # writer), which skips what was committed. Wait longer after each failure.
                    failures += 1
                    log.warning(
                        "herald_ingest: a batch failed (%s); trying again",
                        type(exc).__name__,
                        extra={"error": type(exc).__name__},
                    )
                    time.sleep(min(0.5 * 2**failures, 10.0))
                    connection.close()
                    continue
                failures = 0
                if not connection.in_atomic_block:  # (a test's transaction is not to be closed)
                    close_old_connections()  # as between two requests
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("herald_ingest stopped: %s events written", written, extra={"written": written})
        if once or drain:
            self.stdout.write(f"{written} events written")
