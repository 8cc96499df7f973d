"""The test suite's settings: Herald's own (config.settings), with the FCM sandbox installed.

The tests talk to the sandbox, so it must be in INSTALLED_APPS; the variable is set in the
environment, not only here, so that the processes tests start (workers, `manage.py demo`)
install it too.
"""

import os

os.environ.setdefault("FCM_SANDBOX_ENABLED", "1")

from config.settings import *  # noqa: E402, F403
