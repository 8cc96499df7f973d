#!/usr/bin/env python
"""`manage.py <command>` that counts the SQL statements it sends, for fanout.py.

    python bench/counting_worker.py STATS_FILE db_worker --batch ...

Every database connection the command opens gets an execute wrapper; `executemany`
counts once per parameter set (each is a statement on the server). At exit the count is
written to STATS_FILE as JSON, with a breakdown by kind of statement ("kinds": the verb
and the first table it names, e.g. "UPDATE messaging_delivery") and, with
HERALD_COUNT_SQL_TIME=1, the client-side milliseconds each kind took. Bench only: the
product never loads this.
"""

import atexit
import json
import os
import re
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


if __name__ == "__main__":
    stats_file = sys.argv.pop(1)
    atexit.register(write_stats, stats_file)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.db.backends.signals import connection_created

    connection_created.connect(attach)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
