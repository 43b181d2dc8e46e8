"""Many threads call rt(x) while another changes the budget: no call fails, none mixes sub-nets."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime

NAMES = ("w64", "w24", "w8")


@pytest.mark.filterwarnings("ignore::slimrt.runtime.runtime.BudgetInfeasibleWarning")
def test_concurrent_calls_while_budget_changes(synthetic_artifact: Path) -> None:
    n_threads, calls = 6, 150
    inputs = [np.random.default_rng(i).standard_normal((1 + i % 3, 3, 16, 16)).astype(np.float32)
              for i in range(n_threads)]
    with SlimRuntime(synthetic_artifact, budget_ms=1e3, threads=1, measure_runs=15, measure_seconds=1.0) as rt:
        # Each sub-net's own output for each input, from its own session (threads=1: deterministic kernels).
        refs = [{n: rt.runner(n).infer(x) for n in NAMES} for x in inputs]
        fastest_p95 = min(s.latency.p95_ms for s in rt.subnets)
        budgets = [1e3, fastest_p95 * 1e-3, 1e3, fastest_p95 * 1.5]  # largest / infeasible->fastest / ...
        served: list[list[str]] = [[] for _ in range(n_threads)]
        errors: list[BaseException] = []
        stop = threading.Event()
        start = threading.Barrier(n_threads + 1)

        def worker(k: int) -> None:
            try:
                start.wait()
                for _ in range(calls):
                    y = rt(inputs[k])
                    match = [n for n in NAMES if y.shape == refs[k][n].shape and np.array_equal(y, refs[k][n])]
                    assert len(match) == 1, f"output matches {match}: mixed or corrupted"
                    served[k].append(match[0])
            except BaseException as e:  # surfaced below
                errors.append(e)

        def changer() -> None:
            start.wait()
            i = 0
            while not stop.is_set():
                rt.budget_ms = budgets[i % len(budgets)]
                i += 1
                stop.wait(0.0005)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        ch = threading.Thread(target=changer)
        for t in [*threads, ch]:
            t.start()
        for t in threads:
            t.join(timeout=120)
        stop.set()
        ch.join(timeout=10)
        assert not errors, errors[0]
        assert all(len(s) == calls for s in served)
        st = rt.stats()
        assert st.total_calls == n_threads * calls
        used = {n for s in served for n in s}
        assert len(used) >= 2  # the budget changes really switched sub-nets under the callers
        assert {n: sum(s.count(n) for s in served) for n in NAMES} == st.calls
