"""Small flows the Prefect tests deploy (by file entrypoint) and run on a real process worker."""
import time

from prefect import flow

FAILURE_MESSAGE = 'ERP answered 503 for batch 2 of "shop-a" (deliberate test failure)'


@flow(name="orderhub-test-always-fails", retries=0)
def always_fails() -> None:
    raise RuntimeError(FAILURE_MESSAGE)


@flow(name="orderhub-test-too-slow", timeout_seconds=1)
def too_slow() -> None:
    time.sleep(20)


@flow(name="orderhub-test-crashes")
def crashes() -> None:
    """The flow-run process dies as under an OOM kill; the worker reports the run Crashed."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
