"""slimrt.bench / slimrt.plot: quantile math, fingerprint matching, device checks, stored profiles, the plot file."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slimrt.artifact import load_latency_profiles, load_manifest, verify_artifact
from slimrt.bench import bench_input, clocks_locked, cuda_devices, load_device_profile, run_bench, run_device_checks
from slimrt.errors import BackendUnavailableError, InputError, ProfileError, SlimrtError
from slimrt.fingerprint import gpu_info
from slimrt.plot import pareto_front, plot_accuracy_vs_latency, plot_accuracy_vs_macs, plot_bench
from slimrt.runtime.measure import measure_latency, summarize
from slimrt.schema import DeviceProfile, SubnetLatency

HAS_GPU = gpu_info()[0] is not None


def _fast_cpu(**update: object) -> DeviceProfile:
    """The shipped cpu profile with a short warm-up (tests check behaviour, not timing)."""
    return load_device_profile("cpu").model_copy(update={"warmup": 2, **update})


# ----------------------------------------------------------------------------------------- quantile math


def test_quantile_ms_interpolates_between_stored_quantiles() -> None:
    s = SubnetLatency(name="a", p50_ms=1.0, p90_ms=2.0, p95_ms=4.0, p99_ms=8.0, mean_ms=1.5, cv=0.1, runs=100)
    assert s.quantile_ms(0.5) == 1.0
    assert s.quantile_ms(0.7) == pytest.approx(1.5)  # halfway between p50 and p90
    assert s.quantile_ms(0.925) == pytest.approx(3.0)  # halfway between p90 and p95
    assert s.quantile_ms(0.95) == pytest.approx(4.0)
    assert s.quantile_ms(0.98) == pytest.approx(7.0)  # three quarters from p95 to p99
    assert s.quantile_ms(0.2) == 1.0  # below p50: p50
    assert s.quantile_ms(0.999) == 8.0  # above p99: p99
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError):
            s.quantile_ms(bad)


@given(
    st.lists(st.floats(0.001, 1000.0), min_size=4, max_size=4).map(sorted),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
)
def test_quantile_ms_is_monotone_and_bounded(qs: list[float], a: float, b: float) -> None:
    s = SubnetLatency(name="a", p50_ms=qs[0], p90_ms=qs[1], p95_ms=qs[2], p99_ms=qs[3], mean_ms=qs[0], cv=0, runs=1)
    lo, hi = min(a, b), max(a, b)
    assert s.quantile_ms(lo) <= s.quantile_ms(hi) + 1e-9
    assert qs[0] - 1e-9 <= s.quantile_ms(lo) <= qs[3] + 1e-9


def test_summarize_percentiles_of_known_samples() -> None:
    samples = np.arange(1, 101, dtype=float)  # 1..100 ms
    s = summarize("x", samples[::-1])  # order must not matter
    # Linear interpolation at rank (n - 1) * q on the sorted samples 1..100: value = 1 + 99 q.
    assert s.p50_ms == pytest.approx(1 + 99 * 0.5)
    assert s.p90_ms == pytest.approx(1 + 99 * 0.9)
    assert s.p95_ms == pytest.approx(1 + 99 * 0.95)
    assert s.p99_ms == pytest.approx(1 + 99 * 0.99)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.cv == pytest.approx(math.sqrt((100**2 - 1) / 12) / 50.5)
    assert s.runs == 100


def test_measure_latency_interleaves_every_runner() -> None:
    calls: list[str] = []
    x = np.zeros((1, 3), np.float32)

    def make(name: str):
        def f(v: np.ndarray) -> np.ndarray:
            calls.append(name)
            return v

        return f

    out = measure_latency({n: make(n) for n in "abc"}, x, warmup=2, runs=7)
    assert set(out) == {"a", "b", "c"} and all(s.runs == 7 for s in out.values())
    assert len(calls) == 3 * (2 + 7)
    timed = calls[6:]
    rounds = [timed[i : i + 3] for i in range(0, len(timed), 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # round-robin: each sub-net once per round
    assert len({r[0] for r in rounds}) == 3  # ... and the starting sub-net rotates


# ----------------------------------------------------------------------------------------- bench + fingerprints


def test_run_bench_stores_a_profile_the_runtime_reuses(synthetic_artifact: Path) -> None:
    from slimrt import SlimRuntime

    res = run_bench(synthetic_artifact, _fast_cpu(), runs=20, progress=False)
    manifest = verify_artifact(synthetic_artifact)  # checksums of the new latency file and manifest hold
    assert [r.fingerprint for r in manifest.latency] == [res.fingerprint_id]
    assert res.saved_to is not None and res.saved_to.startswith(f"latency/{res.fingerprint_id}-")
    assert [s.name for s in res.subnets] == [s.name for s in manifest.subnets]
    for s in res.subnets:
        assert 0 < s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms
        assert s.runs == 20
    assert res.subnets[0].speedup_p50 == pytest.approx(1.0)
    assert res.fingerprint.batch_size == 1 and res.fingerprint.threads is None
    assert res.fingerprint.backend == "onnxruntime" and res.fingerprint.providers == ["CPUExecutionProvider"]

    with SlimRuntime(synthetic_artifact, budget_ms=5.0, device="cpu", measure_if_missing=False) as rt:
        assert rt.latency_source == "stored"
        assert rt.fingerprint.id() == res.fingerprint_id
        assert rt.latency_profile.latency("w8") == res.latency_profile.latency("w8")
    # A different thread count or batch size is another fingerprint: the stored profile is not used.
    with pytest.raises(ProfileError, match="no stored latency profile"):
        SlimRuntime(synthetic_artifact, device="cpu", threads=1, measure_if_missing=False)
    with pytest.raises(ProfileError, match="no stored latency profile"):
        SlimRuntime(synthetic_artifact, device="cpu", batch_size=2, measure_if_missing=False)


def test_bench_with_other_threads_and_batch_adds_profiles(synthetic_artifact: Path) -> None:
    a = run_bench(synthetic_artifact, _fast_cpu(), runs=10, progress=False)
    b = run_bench(synthetic_artifact, _fast_cpu(), runs=10, threads=1, progress=False)
    c = run_bench(synthetic_artifact, _fast_cpu(), runs=10, batch_size=2, progress=False)
    again = run_bench(synthetic_artifact, _fast_cpu(), runs=10, progress=False)
    assert len({a.fingerprint_id, b.fingerprint_id, c.fingerprint_id}) == 3
    assert again.fingerprint_id == a.fingerprint_id  # same machine + settings: same id, replaced in place
    manifest = load_manifest(synthetic_artifact)
    assert sorted(r.fingerprint for r in manifest.latency) == sorted({a.fingerprint_id, b.fingerprint_id,
                                                                      c.fingerprint_id})
    stored = {p.fingerprint_id: p for p in load_latency_profiles(synthetic_artifact, manifest)}
    assert stored[b.fingerprint_id].fingerprint.threads == 1
    assert stored[c.fingerprint_id].batch_size == 2 and stored[c.fingerprint_id].fingerprint.batch_size == 2
    assert stored[a.fingerprint_id].created == again.latency_profile.created


def test_no_save_leaves_the_artifact_untouched(synthetic_artifact: Path) -> None:
    before = (synthetic_artifact / "manifest.json").read_bytes()
    res = run_bench(synthetic_artifact, _fast_cpu(), runs=10, save=False, progress=False)
    assert res.saved_to is None
    assert (synthetic_artifact / "manifest.json").read_bytes() == before
    assert not (synthetic_artifact / "latency").exists()


def test_noisy_flag_follows_profile_threshold(synthetic_artifact: Path) -> None:
    strict = run_bench(synthetic_artifact, _fast_cpu(noisy_cv=1e-9), runs=10, save=False, progress=False)
    assert strict.noisy and strict.latency_profile.noisy and all(s.noisy for s in strict.subnets)
    assert any("noisy run" in w for w in strict.warnings)
    lax = run_bench(synthetic_artifact, _fast_cpu(noisy_cv=1e9), runs=10, save=False, progress=False)
    assert not lax.noisy and not any(s.noisy for s in lax.subnets)


def test_fixed_batch_artifact_rejects_another_batch(tmp_path: Path, build_artifact) -> None:
    root = build_artifact(tmp_path / "fixed.slim", dynamic_batch=False, batch=1)
    manifest = load_manifest(root)
    assert bench_input(manifest, 1).shape == (1, 3, 16, 16)
    with pytest.raises(InputError, match="exported for batch 1"):
        run_bench(root, _fast_cpu(), batch_size=4, progress=False)


def test_tampered_artifact_is_refused(synthetic_artifact: Path) -> None:
    onnx_file = synthetic_artifact / "subnets" / "w8.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(SlimrtError, match="w8.onnx"):
        run_bench(synthetic_artifact, _fast_cpu(), runs=5, progress=False)


# ----------------------------------------------------------------------------------------- device checks


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU error; this machine has a GPU")
def test_cuda_profile_without_gpu_says_so(synthetic_artifact: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="needs a CUDA GPU"):
        run_bench(synthetic_artifact, load_device_profile("cuda"), runs=5, progress=False)


def test_cuda_probe_agrees_with_nvidia_smi() -> None:
    devices = cuda_devices()  # the CUDA driver through ctypes: None without a driver library
    assert devices is None or all(isinstance(d, str) and d for d in devices)
    name, _ = gpu_info()
    if name and devices is not None:
        assert name in devices


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def _fake_sys(root: Path, governor: str, cpu_lo: int, cpu_hi: int, gpu_lo: int, gpu_hi: int) -> Path:
    for i in (0, 4):
        pol = root / f"devices/system/cpu/cpufreq/policy{i}"
        _write(pol / "scaling_governor", governor)
        _write(pol / "scaling_min_freq", str(cpu_lo))
        _write(pol / "scaling_max_freq", str(cpu_hi))
    gpu = root / "class/devfreq/17000000.gpu"
    _write(gpu / "min_freq", str(gpu_lo))
    _write(gpu / "max_freq", str(gpu_hi))
    _write(root / "class/devfreq/15340000.vic/min_freq", "1")  # not the GPU: ignored
    _write(root / "class/devfreq/15340000.vic/max_freq", "9")
    return root


def test_clocks_locked_reads_cpufreq_and_gpu_devfreq(tmp_path: Path) -> None:
    locked = _fake_sys(tmp_path / "a", "performance", 2_000_000, 2_000_000, 1_300_000_000, 1_300_000_000)
    assert clocks_locked(locked)[0] is True
    cpu_free = _fake_sys(tmp_path / "b", "schedutil", 115_200, 2_200_000, 1_300_000_000, 1_300_000_000)
    ok, detail = clocks_locked(cpu_free)
    assert ok is False and "policy0" in detail and "jetson_clocks" in detail
    gpu_free = _fake_sys(tmp_path / "c", "performance", 1, 1, 306_000_000, 1_300_000_000)
    ok, detail = clocks_locked(gpu_free)
    assert ok is False and "17000000.gpu" in detail and "vic" not in detail
    assert clocks_locked(tmp_path / "empty")[0] is None


def test_unlocked_clocks_only_warn(tmp_path: Path) -> None:
    sys_root = _fake_sys(tmp_path, "schedutil", 115_200, 2_200_000, 306_000_000, 1_300_000_000)
    prof = _fast_cpu(checks=["jetson_clocks", "jetson_power_mode"])
    checks, warnings = run_device_checks(prof, sys_root=sys_root)
    assert [c.name for c in checks] == ["jetson_clocks", "jetson_power_mode"]
    assert not checks[0].ok and any(w.startswith("jetson_clocks:") for w in warnings)
    locked = _fake_sys(tmp_path / "l", "performance", 1, 1, 5, 5)
    checks, _ = run_device_checks(prof.model_copy(update={"checks": ["jetson_clocks"]}), sys_root=locked)
    assert checks[0].ok


# ----------------------------------------------------------------------------------------- plots


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pareto_front_on_hand_written_points() -> None:
    lat = [1.0, 2.0, 3.0, 2.5, 0.5, 2.0]
    acc = [70.0, 80.0, 90.0, 75.0, 60.0, 79.0]
    assert pareto_front(lat, acc) == [4, 0, 1, 2]  # 3 is beaten by 1, 5 by 1 (same latency, less accurate)
    assert pareto_front([1.0, 1.0], [5.0, 5.0]) == [0, 1]  # exact duplicates both stay


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=15))
def test_pareto_front_properties(points: list[tuple[int, int]]) -> None:
    lat = [float(p[0]) for p in points]
    acc = [float(p[1]) for p in points]
    front = set(pareto_front(lat, acc))

    def dominates(i: int, j: int) -> bool:
        return lat[i] <= lat[j] and acc[i] >= acc[j] and (lat[i] < lat[j] or acc[i] > acc[j])

    n = len(points)
    for j in range(n):
        dominated = any(dominates(i, j) for i in range(n))
        assert (j in front) == (not dominated)


def test_bench_plot_is_a_real_png(synthetic_artifact: Path, tmp_path: Path) -> None:
    res = run_bench(synthetic_artifact, _fast_cpu(), runs=10, save=False, progress=False)
    out = plot_bench(res, tmp_path / "plots" / "pareto.png")
    w, h = _png_size(out)
    assert w > 300 and h > 200
    assert out.stat().st_size > 10_000
    assert not list(out.parent.glob(".*"))  # no temp file left behind


def test_plot_without_accuracy_is_an_error(synthetic_artifact: Path, tmp_path: Path) -> None:
    res = run_bench(synthetic_artifact, _fast_cpu(), runs=5, save=False, progress=False)
    bare = res.model_copy(update={"subnets": [s.model_copy(update={"test_accuracy": None, "val_accuracy": None})
                                              for s in res.subnets]})
    with pytest.raises(SlimrtError, match="no sub-net"):
        plot_bench(bare, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_generic_plots_write_pngs(tmp_path: Path) -> None:
    a = plot_accuracy_vs_latency(["big", "mid", "small"], [3.0, 1.5, 0.7], [91.0, 88.5, 80.2], tmp_path / "l.png")
    methods = {
        "progressive": [{"macs": 4e7, "accuracy": 91.0, "name": "full"}, {"macs": 1e7, "accuracy": 88.0}],
        "uniform": [{"macs": 4e7, "test_accuracy": 91.0}, {"macs": 1e7, "test_accuracy": 86.0}],
    }
    b = plot_accuracy_vs_macs(methods, tmp_path / "m.png")
    for p in (a, b):
        assert _png_size(p)[0] > 300 and p.stat().st_size > 10_000
    with pytest.raises(ValueError, match="macs"):
        plot_accuracy_vs_macs({"x": [{"accuracy": 1.0}]}, tmp_path / "bad.png")


def test_bench_result_json_has_documented_keys(synthetic_artifact: Path) -> None:
    res = run_bench(synthetic_artifact, _fast_cpu(), runs=5, save=False, progress=False)
    d = json.loads(json.dumps(res.to_json_dict()))
    assert {"device", "fingerprint", "subnets"} <= set(d)
    need = {"name", "macs", "test_accuracy", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "cv"}
    assert all(need <= set(s) for s in d["subnets"])


def test_bench_measures_thread_variants_for_the_runtime(synthetic_artifact: Path) -> None:
    from slimrt import SlimRuntime

    res = run_bench(synthetic_artifact, _fast_cpu(), runs=10, threads=2, thread_variants=[1], progress=False)
    assert [v.threads for v in res.thread_variants] == [1]
    assert [s.name for s in res.thread_variants[0].subnets] == [s.name for s in res.subnets]
    assert res.latency_profile.thread_counts == [2, 1]
    with SlimRuntime(synthetic_artifact, threads=(2, 1), measure_if_missing=False) as rt:
        assert rt.latency_source == "stored" and len(rt.variants) == 2 * len(res.subnets)
    with pytest.raises(InputError, match="thread variants"):
        run_bench(synthetic_artifact, _fast_cpu(), runs=10, threads=2, thread_variants=[2], progress=False)
