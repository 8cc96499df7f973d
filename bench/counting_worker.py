#!/usr/bin/env python
"""`manage.py <command>` that counts the SQL statements it sends, for fanout.py.

    python bench/counting_worker.py STATS_FILE db_worker --batch ...

Every database connection the command opens gets an execute wrapper; `executemany`
counts once per parameter set (each is a statement on the server). At exit the count is
written to STATS_FILE as JSON. Bench only: the product never loads this.
"""

import atexit
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

counts = {"statements": 0, "calls": 0}


def count(execute, sql, params, many, context):
    counts["calls"] += 1
    counts["statements"] += len(params) if many and params is not None else 1
    return execute(sql, params, many, context)


def attach(sender, connection, **kwargs):
    if count not in connection.execute_wrappers:
        connection.execute_wrappers.append(count)


def write_stats(path: str) -> None:
    Path(path).write_text(json.dumps(counts))


if __name__ == "__main__":
    stats_file = sys.argv.pop(1)
    atexit.register(write_stats, stats_file)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.db.backends.signals import connection_created

    connection_created.connect(attach)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
