"""The long periodic tasks run one at a time across every worker: a run that finds another in
progress returns at once, doing nothing."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import in_thread, money_db, run_task
from dashboards import health as dashboards_health
from dashboards.tasks import ledger_health_check_task
from wallets import services as wallets_services
from wallets.tasks import deposits_poll_task, reconcile_task, sends_confirm_task

# Each single-flight task, the function it runs its work in, and what that work returns.
TASKS = [
    (ledger_health_check_task, dashboards_health, "ledger_health_check", {"healthy": True}),
    (sends_confirm_task, wallets_services, "sends_confirm", wallets_services.ConfirmReport()),
    (deposits_poll_task, wallets_services, "deposits_poll", 0),
    (reconcile_task, wallets_services, "reconcile", []),
]


@money_db
@pytest.mark.parametrize(("task", "module", "work", "result"), TASKS, ids=[task[0].name for task in TASKS])
def test_a_second_run_returns_at_once_while_the_first_holds_the_lock(monkeypatch, task, module, work, result, caplog):
    caplog.set_level(logging.INFO, logger="paygo.single_flight")
    first_started, first_may_end = threading.Event(), threading.Event()
    runs = []

    def slow_work(*args, **kwargs):
        runs.append(threading.current_thread().name)
        if len(runs) == 1:
            first_started.set()
            assert first_may_end.wait(timeout=30)
        return result

    monkeypatch.setattr(module, work, slow_work)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="worker") as pool:
        first = pool.submit(in_thread(lambda: run_task(task)))
        assert first_started.wait(timeout=30)

        second = pool.submit(in_thread(lambda: run_task(task))).result(timeout=30)

        first_may_end.set()
        first.result(timeout=30)

    assert second is None
    assert len(runs) == 1  # the second run never reached the work
    assert "is running elsewhere; this run ends without doing anything" in caplog.text
    run_task(task)  # the lock went with the first run
    assert len(runs) == 2
