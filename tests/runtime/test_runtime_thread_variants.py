"""SlimRuntime serving (sub-net, threads) pairs with a real artifact and ONNX Runtime: stored and measured
profiles with thread variants, backward compatible profiles, per-thread stats, the warning under a concurrent
budget change."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import add_latency_profile, load_latency_profiles, load_manifest
from slimrt.errors import ConfigError, ProfileError
from slimrt.fingerprint import device_fingerprint
from slimrt.runtime import BudgetInfeasibleWarning
from slimrt.schema import LatencyProfile, SubnetLatency, ThreadLatency

FAST = {"measure_runs": 15, "measure_seconds": 1.0}
NAMES = ("w64", "w24", "w8")


def lats(p95: dict[str, float]) -> list[SubnetLatency]:
    return [SubnetLatency(name=n, p50_ms=v * 0.8, p90_ms=v * 0.9, p95_ms=v, p99_ms=v * 1.1, mean_ms=v * 0.8, cv=0.1,
                          runs=100) for n, v in p95.items()]


def profile(primary: int | None, p95: dict[str, float], variants: dict[int, dict[str, float]]) -> LatencyProfile:
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], primary, "fp32", 1)
    return LatencyProfile(device="cpu", fingerprint=fp, created=datetime.now(timezone.utc).isoformat(),
                          subnets=lats(p95), thread_variants=[ThreadLatency(threads=t, subnets=lats(v))
                                                              for t, v in variants.items()])


def x_in(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def test_profile_round_trip_with_thread_variants(synthetic_artifact: Path) -> None:
    prof = profile(2, {"w64": 3.0, "w24": 2.0, "w8": 1.0}, {1: {"w64": 5.0, "w24": 3.0, "w8": 1.5}})
    again = LatencyProfile.model_validate_json(prof.model_dump_json())
    assert again == prof and again.thread_counts == [2, 1]
    assert again.latency("w24", 1).p95_ms == 3.0 and again.latency("w24").p95_ms == 2.0
    assert again.latency("w24", 2).p95_ms == 2.0
    with pytest.raises(KeyError):
        again.latency("w24", 4)
    add_latency_profile(synthetic_artifact, prof)
    (stored,) = load_latency_profiles(synthetic_artifact, load_manifest(synthetic_artifact))
    assert stored == prof


def test_old_profiles_without_thread_variants_load_and_are_written_unchanged(synthetic_artifact: Path) -> None:
    prof = profile(1, {"w64": 3.0, "w24": 2.0, "w8": 1.0}, {})
    add_latency_profile(synthetic_artifact, prof)
    (path,) = (synthetic_artifact / "latency").glob("*.json")
    assert "thread_variants" not in json.loads(path.read_text())  # an older slimrt (extra="forbid") still reads it
    with SlimRuntime(synthetic_artifact, budget_ms=2.5, threads=1, adapt=False) as rt:
        assert rt.latency_source == "stored" and rt.active.name == "w24" and rt.active.threads == 1
    with pytest.raises(ValueError, match="distinct"):
        profile(1, {"w64": 3.0, "w24": 2.0, "w8": 1.0}, {1: {"w64": 3.0, "w24": 2.0, "w8": 1.0}})


def test_runtime_selects_over_stored_thread_variants(synthetic_artifact: Path) -> None:
    # 2 threads faster when quiet; 1 thread slower. Budget 2.5: w24@2 (2.0) is the most accurate pair that fits.
    add_latency_profile(synthetic_artifact, profile(2, {"w64": 3.0, "w24": 2.0, "w8": 1.0},
                                                    {1: {"w64": 5.0, "w24": 2.4, "w8": 1.5}}))
    with SlimRuntime(synthetic_artifact, budget_ms=2.5, threads=(2, 1), adapt=False) as rt:
        assert rt.latency_source == "stored" and rt.thread_counts == [2, 1]
        assert (rt.active.name, rt.active_threads) == ("w24", 2)
        assert len(rt.variants) == 6 and len(rt.subnets) == 3
        x = x_in(2)
        np.testing.assert_allclose(rt(x), rt.runner("w24", 1).infer(x), atol=1e-5)  # same weights, other pool
        assert rt.runner("w24", 1) is not rt.runner("w24")
        rt.budget_ms = 6.0
        assert (rt.active.name, rt.active_threads) == ("w64", 2)
        rt(x)
        st = rt.stats()
        assert st.calls == {"w64": 1, "w24": 1, "w8": 0} and st.calls_by_threads == {"2": 2, "1": 0}
        assert st.active_threads == 2 and set(st.slowdown_by_threads) == {"2", "1"}
        with pytest.raises(KeyError, match="thread count"):
            rt.runner("w24", 4)


def test_runtime_with_thread_variants_follows_a_slowdown_of_its_multi_threaded_sessions(
        synthetic_artifact: Path) -> None:
    add_latency_profile(synthetic_artifact, profile(2, {"w64": 3.0, "w24": 2.0, "w8": 1.0},
                                                    {1: {"w64": 5.0, "w24": 2.4, "w8": 1.5}}))
    with SlimRuntime(synthetic_artifact, budget_ms=2.5, threads=(2, 1)) as rt:
        ctl = rt._ctl  # feed the controller what a busy second core does to 2-thread sessions
        for _ in range(10):
            k = ctl.active
            t = rt._pair[k][1]
            ctl.observe(k, ctl.selector.candidates[k].latency.p50_ms * (3.0 if t == 2 else 1.0))
        assert (rt.active.name, rt.active_threads) == ("w24", 1)  # fits (2.4) where w24@2 now predicts 6 ms
        assert rt.slowdowns[2] == pytest.approx(3.0) and rt.slowdowns[1] == pytest.approx(1.0)


def test_thread_variants_are_measured_when_the_stored_profile_lacks_them(synthetic_artifact: Path) -> None:
    add_latency_profile(synthetic_artifact, profile(2, {"w64": 3.0, "w24": 2.0, "w8": 1.0}, {}))
    with pytest.raises(ProfileError, match="thread variants"):
        SlimRuntime(synthetic_artifact, threads=(2, 1), measure_if_missing=False)
    with SlimRuntime(synthetic_artifact, budget_ms=1e3, threads=(2, 1), save_profile=True, **FAST) as rt:
        assert rt.latency_source == "measured"
        prof = rt.latency_profile
        assert prof.thread_counts == [2, 1] and [s.name for s in prof.thread_variants[0].subnets] == list(NAMES)
        assert (rt.active.name, rt.active.threads) in {("w64", 2), ("w64", 1)}
    with SlimRuntime(synthetic_artifact, budget_ms=1e3, threads=(2, 1), measure_if_missing=False) as rt:
        assert rt.latency_source == "stored"
    with SlimRuntime(synthetic_artifact, budget_ms=1e3, threads=2, measure_if_missing=False) as rt:
        assert rt.latency_source == "stored" and rt.thread_counts == [2]  # the variants are simply not served


@pytest.mark.parametrize("bad", [(), (1, 1), (1, None), (0,), "2"])
def test_bad_thread_lists_are_rejected(synthetic_artifact: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="thread"):
        SlimRuntime(synthetic_artifact, threads=bad)  # type: ignore[arg-type]


def test_several_thread_counts_only_on_cpu(synthetic_artifact: Path) -> None:
    with pytest.raises(ConfigError, match="CPU knob"):
        SlimRuntime(synthetic_artifact, device="cuda", threads=(2, 1))


def test_warning_never_shows_a_budget_replaced_during_the_call(synthetic_artifact: Path) -> None:
    add_latency_profile(synthetic_artifact, profile(1, {"w64": 3.0, "w24": 2.0, "w8": 1.0}, {}))
    with SlimRuntime(synthetic_artifact, budget_ms=0.01, threads=1, adapt=False) as rt:
        k = rt._ctl.active
        infer = rt._infers[k]

        def changed_meanwhile(x: np.ndarray) -> np.ndarray:
            rt.budget_ms = 1e6  # another thread sets a new budget while this call (under 0.01 ms) runs
            return infer(x)

        rt._infers[k] = changed_meanwhile
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rt(x_in())
        assert not [w for w in caught if "1e+06" in str(w.message)]
        rt._infers[k] = infer
        rt.budget_ms = 0.01
        with pytest.warns(BudgetInfeasibleWarning, match=r"budget 0\.01 ms is below .* \(w8, predicted 1 ms\)"):
            rt(x_in())
        assert rt.stats().budget_infeasible == 2
