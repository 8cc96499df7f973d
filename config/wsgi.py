import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _freeze_loaded_objects() -> None:
    """Move what a loaded process holds for good (settings, apps, models, the URLconf and every
    view: ~120,000 objects) to the garbage collector's permanent generation, once.

    A full collection traverses every tracked object; in a gunicorn worker under load one
    took 0.4-0.7 s (bench/README.md, "gc.freeze()"), stalling every thread of the worker.
    Frozen objects are skipped by every later collection (Python's gc.freeze(): "to speed up
    collection"), so a full collection covers only what the requests made since. The URLconf
    is imported here, as the first request would, so that the views are frozen too; the
    collection first frees what start-up left unreachable, which freezing would keep for good.
    With gunicorn's --preload this runs in the master before the workers fork, which also
    keeps the collector from writing to the pages the workers share (copy-on-write).
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and the views)
    gc.collect()
    gc.freeze()


_freeze_loaded_objects()
