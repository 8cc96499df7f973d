#!/usr/bin/env python
"""`manage.py <command>` that counts the SQL statements it sends, for fanout.py.

    python bench/counting_worker.py STATS_FILE db_worker --batch ...
    python bench/counting_worker.py STATS_FILE rqworker --job-class django_tasks_rq.Job default

Every database connection the command opens gets an execute wrapper; `executemany`
counts once per parameter set (each is a statement on the server). At exit the count is
written to STATS_FILE as JSON. A forked child that runs tasks (RQ's work horse, which
leaves with `os._exit` and so never reaches atexit) appends what each of its tasks sent
to STATS_FILE + ".tasks", one JSON line per task. SIGUSR2 zeroes the count (fanout.py
sends it once the worker has started, so that start-up and idle polling do not count).
Bench only: the product never loads this.
"""

import atexit
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

counts = {"statements": 0, "calls": 0}
MAIN_PID = os.getpid()
_task_start: dict = {}


def count(execute, sql, params, many, context):
    counts["calls"] += 1
    counts["statements"] += len(params) if many and params is not None else 1
    return execute(sql, params, many, context)


def attach(sender, connection, **kwargs):
    if count not in connection.execute_wrappers:
        connection.execute_wrappers.append(count)


def write_stats(path: str) -> None:
    if os.getpid() == MAIN_PID:
        Path(path).write_text(json.dumps(counts))


def task_started(sender, **kwargs):
    _task_start.update(counts)


def task_finished(sender, *, stats_file: str, **kwargs):
    if os.getpid() == MAIN_PID:  # counted at exit
        return
    delta = {key: counts[key] - _task_start.get(key, 0) for key in counts}
    with open(stats_file + ".tasks", "a") as out:  # one short line: an atomic append
        out.write(json.dumps(delta) + "\n")


def zero(signum, frame):
    counts.update(statements=0, calls=0)


def total_statements(stats_file: Path) -> int:
    """What the worker (and its forked children) counted: for fanout.py."""
    total = json.loads(stats_file.read_text())["statements"] if stats_file.exists() else 0
    tasks = Path(str(stats_file) + ".tasks")
    if tasks.exists():
        total += sum(json.loads(line)["statements"] for line in tasks.read_text().splitlines() if line)
    return total


if __name__ == "__main__":
    stats_file = sys.argv.pop(1)
    atexit.register(write_stats, stats_file)
    signal.signal(signal.SIGUSR2, zero)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db.backends.signals import connection_created

    connection_created.connect(attach)
    # django.tasks' signals (the database backend) and django_tasks' (django-tasks-rq's).
    for module in ("django.tasks.signals", "django_tasks.signals"):
        try:
            signals = __import__(module, fromlist=["task_started"])
        except ImportError:
            continue
        signals.task_started.connect(task_started, weak=False)
        signals.task_finished.connect(
            lambda sender, **kwargs: task_finished(sender, stats_file=stats_file, **kwargs), weak=False
        )
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
