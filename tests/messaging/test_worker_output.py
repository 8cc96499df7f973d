"""A worker started by the tests never blocks on its own output."""

from tests.messaging import workers


def test_a_background_command_that_writes_more_than_a_pipe_holds_still_runs_to_its_end():
    # A db_worker logs a few lines per task: ~100 small campaign sends fill a 64 KiB pipe,
    # and a worker whose output nobody read stopped taking tasks there.
    process = workers.start(
        "shell", "-c", "import sys; sys.stdout.write('x' * 300_000); print('done')", env=workers.worker_env()
    )

    assert process.wait(timeout=60) == 0
    process.output.seek(0)
    assert process.output.read().endswith("done\n")
