#!/usr/bin/env python
"""`manage.py <command>` that counts the SQL statements it sends, for fanout.py.

    python bench/counting_worker.py STATS_FILE db_worker --batch ...
    python bench/counting_worker.py STATS_FILE rqworker --job-class django_tasks_rq.Job default

Every database connection the command opens gets an execute wrapper; `executemany`
counts once per parameter set (each is a statement on the server). At exit the count is
written to STATS_FILE as JSON, with a breakdown by kind of statement ("kinds": the verb
and the first table it names, e.g. "UPDATE messaging_delivery") and, with
HERALD_COUNT_SQL_TIME=1, the client-side milliseconds each kind took. A forked child that
runs tasks (RQ's work horse, which leaves with `os._exit` and so never reaches atexit)
appends what each of its tasks sent to STATS_FILE + ".tasks", one JSON line per task.
SIGUSR2 zeroes the count (fanout.py sends it once the worker has started, so that start-up
and idle polling do not count). Bench only: the product never loads this.
"""

import atexit
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

counts = {"statements": 0, "calls": 0}
kinds: Counter = Counter()
milliseconds: Counter = Counter()
timed = os.environ.get("HERALD_COUNT_SQL_TIME") == "1"

_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|JOIN)\s+"?([a-z_][a-z0-9_]*)"?', re.I)


def kind(sql: str) -> str:
    """The statement's verb and the first table it names: what a breakdown groups by.
    A data-modifying CTE (`WITH … AS (UPDATE …)`) is named by the first verb inside it."""
    text = sql.lstrip()
    if text[:4].upper() == "WITH":
        inner = re.search(r"\(\s*(SELECT|INSERT|UPDATE|DELETE)\b", text, re.I)
        verb = f"WITH {inner.group(1).upper()}" if inner else "WITH"
        body = text[inner.start() :] if inner else text
    else:
        verb = (text.split(None, 1) or ["?"])[0].upper()
        body = text
    table = _TABLE.search(body)
    if verb in ("SET", "RESET", "DECLARE", "FETCH", "CLOSE", "SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    return f"{verb} {table.group(1) if table else ''}".strip()


MAIN_PID = os.getpid()
_task_start: dict = {}


def count(execute, sql, params, many, context):
    n = len(params) if many and params is not None else 1
    counts["calls"] += 1
    counts["statements"] += n
    name = kind(sql)
    kinds[name] += n
    if not timed:
        return execute(sql, params, many, context)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        milliseconds[name] += 1000 * (time.perf_counter() - started)


def attach(sender, connection, **kwargs):
    if count not in connection.execute_wrappers:
        connection.execute_wrappers.append(count)


def write_stats(path: str) -> None:
    if os.getpid() != MAIN_PID:
        return
    stats = {**counts, "kinds": dict(kinds.most_common())}
    if timed:
        stats["milliseconds"] = {k: round(v, 1) for k, v in milliseconds.most_common()}
    Path(path).write_text(json.dumps(stats))
    if os.environ.get("HERALD_COUNT_SQL_PRINT") == "1":
        total = counts["statements"] or 1
        print(f"{counts['statements']} statements by kind:", file=sys.stderr)
        for name, n in kinds.most_common():
            ms = f"{milliseconds[name]:>9.0f} ms" if timed else ""
            print(f"  {n:>7} {100 * n / total:5.1f} % {ms}  {name}", file=sys.stderr)


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
    kinds.clear()
    milliseconds.clear()


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
