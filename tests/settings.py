"""The test suite's settings: Herald's own (config.settings), with the FCM sandbox installed.

The tests talk to the sandbox, so it must be in INSTALLED_APPS; the variable is set in the
environment, not only here, so that the processes tests start (workers, `manage.py demo`)
install it too.
"""

import os

os.environ.setdefault("FCM_SANDBOX_ENABLED", "1")
# Herald refuses the repository's public SECRET_KEY without DEBUG; the suite runs as
# production does (DEBUG off) with a key of its own, which the processes it starts inherit.
os.environ.setdefault("SECRET_KEY", "herald-test-suite-" + "k" * 40)

from config.settings import *  # noqa: E402, F403
