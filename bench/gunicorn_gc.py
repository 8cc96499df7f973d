"""A gunicorn config for bench/api_load.py's gc.freeze() experiment (``--gunicorn-config``).

Each worker counts its garbage collections (per generation: how many, their total and longest
pause) and prints them when it exits. With HERALD_BENCH_GC_FREEZE=1 a worker, once it has loaded
the application, imports the URLconf (and so every view) as its first request would, collects,
and moves every object it has to the permanent generation (gc.freeze()), which later
collections do not traverse.
"""

import gc
import os
import sys
import time

FREEZE = os.environ.get("HERALD_BENCH_GC_FREEZE") == "1"
# Per generation: count, seconds (wall), longest (wall), CPU seconds of the collecting thread.
_stats = {generation: [0, 0.0, 0.0, 0.0] for generation in (0, 1, 2)}
_started = [0.0, 0.0]


def _count(phase, info):
    if phase == "start":
        _started[0], _started[1] = time.perf_counter(), time.thread_time()
        return
    took, cpu = time.perf_counter() - _started[0], time.thread_time() - _started[1]
    entry = _stats[info["generation"]]
    entry[0] += 1
    entry[1] += took
    entry[2] = max(entry[2], took)
    entry[3] += cpu


def post_worker_init(worker):
    if FREEZE:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 (imports every view now, not on the first request)
        gc.collect()
        gc.freeze()
    gc.callbacks.append(_count)
    worker._herald_gc_started = time.process_time()


def worker_exit(server, worker):
    cpu = time.process_time() - getattr(worker, "_herald_gc_started", 0.0)
    parts = ", ".join(
        f"gen{g} {n} × {1000 * total / max(n, 1):.2f} ms "
        f"(total {1000 * total:.0f} ms, max {1000 * most:.1f} ms, CPU {1000 * cpu:.0f} ms)"
        for g, (n, total, most, cpu) in _stats.items()
    )
    print(
        f"[gc] worker {os.getpid()} freeze={FREEZE} frozen={gc.get_freeze_count()} "
        f"tracked={len(gc.get_objects())}: {parts}; worker CPU {cpu:.1f} s",
        file=sys.stderr,
        flush=True,
    )
