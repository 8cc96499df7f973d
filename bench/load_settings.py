"""Herald's settings for bench/api_load.py: the real ones, plus a bare view as the floor.

Only gunicorn processes started by the benchmark load this module; Herald's own URLconf
never gains the floor URL.
"""

import os

# A benchmark runs with DEBUG off, as production does, and so needs a SECRET_KEY of its own.
os.environ.setdefault("SECRET_KEY", "herald-bench-" + "b" * 40)

from config.settings import *  # noqa: E402, F403

ROOT_URLCONF = "bench.load_urls"
