"""Clear sessions (issue 15) with a real artifact and ONNX Runtime: while every slowdown estimate says the device runs
as profiled, a call outside a steady run is served by a third session of its sub-net whose workers spin during the
run and stop at its end; once an estimate shows contention the regular, non-spinning session serves again."""

from __future__ import annotations

import gc
import weakref
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import add_latency_profile
from slimrt.backends.onnxrt import OnnxRuntimeRunner
from slimrt.fingerprint import device_fingerprint
from slimrt.schema import LatencyProfile, SubnetLatency


def x_in(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def stored_profile(root: Path, p50_ms: float, threads: int | None = 2) -> None:
    """A stored profile (primary thread count ``threads``) saying w64 takes ``3 * p50_ms``, w24 2x, w8 1x."""
    subs = [SubnetLatency(name=n, p50_ms=p50_ms * f, p90_ms=p50_ms * f * 1.1, p95_ms=p50_ms * f * 1.2,
                          p99_ms=p50_ms * f * 1.3, mean_ms=p50_ms * f, cv=0.1, runs=100)
            for n, f in (("w64", 3.0), ("w24", 2.0), ("w8", 1.0))]
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], threads, "fp32", 1)
    add_latency_profile(root, LatencyProfile(device="cpu", fingerprint=fp, subnets=subs,
                                             created=datetime.now(timezone.utc).isoformat()))


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
    from slimrt.errors import ConfigError

    with SlimRuntime(synthetic_artifact, budget_ms=1e6, measure_runs=10, measure_seconds=0.5) as rt, \
            pytest.raises(ConfigError, match="w99"):  # fmt: skip
        rt.prepare_clear(["w99"])
