"""Runs tune the cyclic garbage collector for their duration; nested and concurrent runs share one setting and the
last one out restores the process's own."""
import gc
import threading

from orderhub.flows.pipeline import Pipeline


def test_nested_and_concurrent_runs_restore_the_collector_once():
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with Pipeline.gc_tuned():
        tuned = gc.get_threshold()
        assert tuned[0] == 70_000 and tuned[1:] == before[1:]
        inner_done = threading.Event()

        def other_run():
            with Pipeline.gc_tuned():
                assert gc.get_threshold() == tuned
            inner_done.set()

        t = threading.Thread(target=other_run)
        t.start()
        t.join()
        assert inner_done.is_set() and gc.get_threshold() == tuned  # the other run's exit did not restore it
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen_before


def test_the_collector_is_restored_when_a_run_fails():
    before = gc.get_threshold()
    try:
        with Pipeline.gc_tuned():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
