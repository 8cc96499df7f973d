"""Herald's settings for bench/api_load.py: the real ones, plus a bare view as the floor.

Only gunicorn processes started by the benchmark load this module; Herald's own URLconf
never gains the floor URL.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"
