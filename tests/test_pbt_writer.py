"""Write-behind for PBT's records: jobs run in order, off the caller's thread; a failure
stops the writer and reaches the caller."""
from __future__ import annotations

import threading

import pytest

from flowopt.nodes.tuner.pbt.writer import WriteBehind


def test_jobs_run_in_submission_order_on_another_thread():
    writer, seen = WriteBehind(), []
    caller = threading.get_ident()
    for k in range(200):
        writer.submit(lambda k=k: seen.append((k, threading.get_ident())))
    writer.flush()
    assert [k for k, _ in seen] == list(range(200))
    assert {ident for _, ident in seen} != {caller}
    writer.close()


def test_submit_returns_before_the_job_has_run_and_flush_waits_for_it():
    writer, gate, done = WriteBehind(), threading.Event(), []
    writer.submit(gate.wait)
    writer.submit(lambda: done.append(1))
    assert done == []  # the writer is still blocked on the first job
    gate.set()
    writer.flush()
    assert done == [1]
    writer.close()


def test_a_failed_job_stops_the_writer_and_is_raised_to_the_caller():
    writer, ran = WriteBehind(), []
    writer.submit(lambda: 1 / 0)
    writer.submit(lambda: ran.append("after"))
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    assert ran == []  # nothing runs after a failure: no event may outlive a lost checkpoint
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: None)
    with pytest.raises(ZeroDivisionError):
        writer.close()


def test_close_runs_what_is_queued_then_stops_the_thread():
    writer, seen = WriteBehind(), []
    for k in range(50):
        writer.submit(lambda k=k: seen.append(k))
    writer.close()
    assert seen == list(range(50))
    assert not writer._thread.is_alive()
