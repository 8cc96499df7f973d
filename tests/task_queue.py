"""The real task queue in tests: django-tasks-db's backend, and its worker run in-process.

`database_tasks` (a fixture, registered in tests/conftest.py) queues tasks in the database
instead of running them at once; `run_queue` runs them as `db_worker` takes them.
"""

import pytest
from django.tasks.signals import task_started
from django_tasks_db.management.commands.db_worker import Worker


@pytest.fixture
def database_tasks(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}


def run_queue(*, max_tasks=None) -> list[tuple[str, list]]:
    """Run queued tasks as `db_worker` takes them (priority, then run_after, then age) until
    none is ready, or `max_tasks`; the tasks run, in order, as (name, args)."""
    ran = []

    def started(sender, task_result, **kwargs):
        ran.append((task_result.task.name, list(task_result.args)))

    task_started.connect(started)
    try:
        Worker(
            queue_names=["default"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=max_tasks,
            worker_id="test-worker",
            excluded_queue_names=[],
        ).run()
    finally:
        task_started.disconnect(started)
    return ran
