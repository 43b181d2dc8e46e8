"""Steady sessions (issue 15) with a real artifact and ONNX Runtime: a second, spinning session of a sub-net serves
once it has run ``steady_after`` calls in a row, a switch goes back to the regular session, outputs are the same,
closing frees both, concurrent calls and budget changes stay correct. Clear sessions likewise: while every slowdown
estimate says the device runs as profiled, a call outside a steady run is served by a session whose workers spin
during the run and stop at its end; once an estimate shows contention the regular session serves again."""

from __future__ import annotations

import gc
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import add_latency_profile
from slimrt.backends.onnxrt import OnnxRuntimeRunner
from slimrt.errors import ConfigError, SlimrtError
from slimrt.fingerprint import device_fingerprint
from slimrt.schema import LatencyProfile, SubnetLatency

FAST = {"measure_runs": 10, "measure_seconds": 0.5}


def x_in(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def stored_profile(root: Path, p50_ms: float, threads: int | None = 2) -> None:
    """A stored profile (primary thread count ``threads``) saying every sub-net takes ``p50_ms``."""
    subs = [SubnetLatency(name=n, p50_ms=p50_ms * f, p90_ms=p50_ms * f * 1.1, p95_ms=p50_ms * f * 1.2,
                          p99_ms=p50_ms * f * 1.3, mean_ms=p50_ms * f, cv=0.1, runs=100)
            for n, f in (("w64", 3.0), ("w24", 2.0), ("w8", 1.0))]
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], threads, "fp32", 1)
    add_latency_profile(root, LatencyProfile(device="cpu", fingerprint=fp, subnets=subs,
                                             created=datetime.now(timezone.utc).isoformat()))


def test_steady_session_serves_after_n_calls_in_a_row_and_not_before(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=3, **FAST) as rt:
        runner = rt.runner("w64")
        assert isinstance(runner, OnnxRuntimeRunner) and rt.active_name == "w64"
        x = x_in()
        for _ in range(2):
            rt(x)
        assert rt.wait_steady(30)
        assert runner.steady_session is None and rt.steady_ready == [] and rt.stats().steady_calls == 0
        rt(x)  # the 3rd call in a row asks for the steady session (built in the background)
        assert rt.wait_steady(30) and rt.steady_ready == [("w64", 2)]
        assert runner.steady_session is not None and runner.steady_session is not runner.session
        before = rt.stats().steady_calls
        for _ in range(5):
            rt(x)
        st = rt.stats()
        assert st.steady_calls == before + 5 and st.calls["w64"] == 8
        # only the served sub-net got one
        assert rt.runner("w24").steady_session is None and rt.runner("w8").steady_session is None


def test_a_switch_goes_back_to_the_regular_session(synthetic_artifact: Path) -> None:
    stored_profile(synthetic_artifact, 1.0)
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=2, adapt=False) as rt:
        x = x_in()
        assert rt.prepare_steady(["w64", "w8"]) == 2
        assert sorted(rt.steady_ready) == [("w64", 2), ("w8", 2)]
        rt(x)
        rt(x)
        assert rt.stats().steady_calls == 0  # two calls in a row: not yet
        rt(x)
        assert rt.stats().steady_calls == 1
        rt.budget_ms = 1.5  # only w8 (p95 1.2 ms) fits
        assert rt.active_name == "w8"
        rt(x)
        rt(x)
        st = rt.stats()
        assert st.steady_calls == 1 and st.calls == {"w64": 3, "w24": 0, "w8": 2}
        rt(x)
        assert rt.stats().steady_calls == 2  # w8's own run reached 2
        rt.budget_ms = 1e6
        rt(x)  # back on w64: a new run, the regular session again
        assert rt.stats().steady_calls == 2 and rt.stats().calls["w64"] == 4


def test_steady_and_regular_sessions_give_identical_outputs(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=1, **FAST) as rt:
        runner = rt.runner("w64")
        steady = runner.steady_infer()
        assert steady is not None and runner.steady_session is not None
        for b, seed in ((1, 1), (4, 2)):
            x = x_in(b, seed)
            # same file, same thread count, same kernels: only how idle workers wait differs
            np.testing.assert_array_equal(steady(x), runner.infer(x))
        rt(x_in(1, 3))
        assert rt.wait_steady(30)
        x = x_in(1, 4)
        y = rt(x)
        assert rt.stats().steady_calls == 1
        np.testing.assert_array_equal(y, runner.infer(x))


def test_close_frees_both_sessions(synthetic_artifact: Path) -> None:
    rt = SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=1, **FAST)
    assert rt.prepare_steady() == 3
    runners = [rt.runner(n) for n in ("w64", "w24", "w8")]
    refs = [weakref.ref(s) for r in runners for s in (r.session, r.steady_session)]  # type: ignore[attr-defined]
    rt(x_in())
    rt.close()
    assert all(r.session is None and r.steady_session is None for r in runners)  # type: ignore[attr-defined]
    assert rt.steady_ready == [] and runners[0].steady_infer() is None
    gc.collect()
    assert all(ref() is None for ref in refs)
    with pytest.raises(SlimrtError, match="closed"):
        rt(x_in())


def test_no_steady_sessions_when_off_or_single_threaded(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None, **FAST) as rt:
        x = x_in()
        for _ in range(20):
            rt(x)
        assert rt.wait_steady(30) and rt.steady_ready == [] and rt.stats().steady_calls == 0
        assert rt.runner("w64").steady_session is None  # type: ignore[attr-defined]
    # a one-thread session has no pool to spin: only the 2-thread pairs get a steady session
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=(2, 1), steady_after=2, **FAST) as rt:
        assert rt.prepare_steady() == 3
        assert sorted(rt.steady_ready) == [("w24", 2), ("w64", 2), ("w8", 2)]
        assert rt.runner("w64", 1).steady_infer() is None
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, backend_options={"threading": "spin"},
                     **FAST) as rt:
        assert rt.prepare_steady() == 0  # its sessions spin already


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_steady_after_is_rejected(synthetic_artifact: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="steady_after"):
        SlimRuntime(synthetic_artifact, steady_after=bad)  # type: ignore[arg-type]


def test_prepare_steady_names_unknown_subnets(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, **FAST) as rt, pytest.raises(ConfigError, match="w99"):
        rt.prepare_steady(["w99"])


def test_faster_steady_calls_do_not_pull_the_slowdown_below_the_profile(synthetic_artifact: Path) -> None:
    # The stored profile says 300 ms for w64: every real call is far faster. Calls on the regular session say so
    # (slowdown at its floor); calls on the steady session count no faster than the profile, which describes the
    # session a switch lands on.
    stored_profile(synthetic_artifact, 100.0)
    x = x_in()
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None, clear_sessions=False) as rt:
        for _ in range(40):
            rt(x)
        assert rt.slowdown == pytest.approx(0.25)
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=1, clear_sessions=False) as rt:
        assert rt.prepare_steady(["w64"]) == 1
        for _ in range(40):
            rt(x)
        assert rt.stats().steady_calls == 39 and rt.slowdown == pytest.approx(1.0)
    # clear sessions likewise: the profile describes the regular session, which contention lands on
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None) as rt:
        assert rt.prepare_clear(["w64"]) == 1
        for _ in range(40):
            rt(x)
        assert rt.stats().clear_calls == 40 and rt.slowdown == pytest.approx(1.0)


def test_concurrent_calls_and_budget_changes_with_steady_sessions(synthetic_artifact: Path) -> None:
    stored_profile(synthetic_artifact, 1.0)
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=2, adapt=False) as rt:
        xs = [x_in(1, s) for s in range(4)]
        want = {name: [rt.runner(name).infer(x) for x in xs] for name in ("w64", "w8")}
        errors: list[str] = []
        stop = threading.Event()

        def caller(k: int) -> None:
            for _ in range(60):
                y = rt(xs[k])
                if not any(np.array_equal(y, want[n][k]) for n in want):
                    errors.append(f"thread {k}: output matches neither w64 nor w8")

        def flipper() -> None:
            while not stop.is_set():
                for b in (1e6, 1.5):  # w64, then w8
                    rt.budget_ms = b
                    for _ in range(5):
                        if stop.is_set():
                            return
                        stop.wait(0.002)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        flip = threading.Thread(target=flipper)
        flip.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stop.set()
        flip.join(10)
        assert rt.wait_steady(30)
        assert not errors
        st = rt.stats()
        assert st.total_calls == 240 and sum(st.calls.values()) == 240 and st.calls["w24"] == 0
        assert set(rt.steady_ready) <= {("w64", 2), ("w8", 2)}
        rt.budget_ms = 1e6
        for _ in range(3):
            rt(xs[0])
        rt.wait_steady(30)
        y = rt(xs[0])
        np.testing.assert_array_equal(y, want["w64"][0])
        assert ("w64", 2) in rt.steady_ready


def test_clear_session_serves_while_the_device_runs_as_profiled(synthetic_artifact: Path) -> None:
    stored_profile(synthetic_artifact, 100.0)  # every real call is far faster: clear
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None) as rt:
        runner = rt.runner("w64")
        assert isinstance(runner, OnnxRuntimeRunner) and runner.clear_session is None
        x = x_in()
        rt(x)  # the first clear call asks for w64's clear session, built in the background
        assert rt.wait_steady(30) and rt.clear_ready == [("w64", 2)]
        sess = runner.clear_session
        assert sess is not None and sess is not runner.session
        so = sess.get_session_options()
        assert so.get_session_config_entry("session.force_spinning_stop") == "1"
        assert runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
        for _ in range(5):
            rt(x)
        st = rt.stats()
        assert st.clear_calls == 5 and st.calls["w64"] == 6 and st.steady_calls == 0
        assert rt.runner("w8").clear_session is None  # only the served sub-net got one


def test_contention_goes_back_to_the_regular_session(synthetic_artifact: Path) -> None:
    # The stored profile says 1 us: every real call reads as a device tens of times slower than profiled, which is
    # what contention looks like to the estimator. After the fast view's three calls nothing is clear any more.
    stored_profile(synthetic_artifact, 0.001)
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None) as rt:
        assert rt.prepare_clear() == 3
        x = x_in()
        for _ in range(3):
            rt(x)
        assert rt.stats().clear_calls == 3 and rt.slowdown > 1.1
        for _ in range(20):
            rt(x)
        st = rt.stats()
        assert st.clear_calls == 3 and st.total_calls == 23


def test_clear_and_regular_sessions_give_identical_outputs(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None, measure_runs=10,
                     measure_seconds=0.5) as rt:
        runner = rt.runner("w64")
        clear = runner.clear_infer()
        assert clear is not None
        for b, seed in ((1, 1), (4, 2)):
            x = x_in(b, seed)
            np.testing.assert_array_equal(clear(x), runner.infer(x))


def test_no_clear_sessions_when_off_static_single_threaded_or_spinning(synthetic_artifact: Path) -> None:
    stored_profile(synthetic_artifact, 100.0)
    stored_profile(synthetic_artifact, 100.0, threads=1)
    x = x_in()
    for kw in ({"clear_sessions": False}, {"adapt": False}):
        with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, steady_after=None, **kw) as rt:
            for _ in range(10):
                rt(x)
            assert rt.prepare_clear() == 0 and rt.wait_steady(30)
            assert rt.clear_ready == [] and rt.stats().clear_calls == 0
            assert rt.runner("w64").clear_session is None  # type: ignore[attr-defined]
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=1, steady_after=None) as rt:
        assert rt.prepare_clear() == 0  # one thread: no pool to spin
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2, backend_options={"threading": "spin"},
                     measure_runs=10, measure_seconds=0.5) as rt:
        assert rt.prepare_clear() == 0  # its sessions spin already


def test_close_frees_clear_sessions(synthetic_artifact: Path) -> None:
    stored_profile(synthetic_artifact, 100.0)
    rt = SlimRuntime(synthetic_artifact, budget_ms=1e6, threads=2)
    assert rt.prepare_clear() == 3 and rt.prepare_steady() == 3
    runners = [rt.runner(n) for n in ("w64", "w24", "w8")]
    refs = [weakref.ref(s) for r in runners for s in (r.clear_session, r.steady_session)]  # type: ignore[attr-defined]
    rt(x_in())
    rt.close()
    assert all(r.clear_session is None for r in runners)  # type: ignore[attr-defined]
    assert rt.clear_ready == [] and runners[0].clear_infer() is None
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_prepare_clear_names_unknown_subnets(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, budget_ms=1e6, measure_runs=10, measure_seconds=0.5) as rt, \
            pytest.raises(ConfigError, match="w99"):  # fmt: skip
        rt.prepare_clear(["w99"])
