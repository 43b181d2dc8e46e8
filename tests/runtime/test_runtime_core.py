"""SlimRuntime on a real (synthetic) artifact: selection, budget changes, stats, input errors, tampering,
stored profiles, closing."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import SIDECAR_NAME, add_latency_profile, load_manifest, verify_artifact
from slimrt.errors import ArtifactError, BudgetError, ConfigError, InputError, ProfileError, SlimrtError
from slimrt.fingerprint import device_fingerprint
from slimrt.runtime import BudgetInfeasibleWarning
from slimrt.schema import LatencyProfile, SubnetLatency

FAST = {"measure_runs": 15, "measure_seconds": 1.0}


def store_profile(root: Path, p95: dict[str, float], threads: int | None = 1) -> None:
    """Store a hand-written profile under the fingerprint SlimRuntime computes here for ``threads``."""
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], threads, "fp32", 1)
    subs = [SubnetLatency(name=n, p50_ms=v * 0.8, p90_ms=v * 0.9, p95_ms=v, p99_ms=v * 1.1, mean_ms=v * 0.8, cv=0.1,
                          runs=100) for n, v in p95.items()]
    add_latency_profile(root, LatencyProfile(device="cpu", fingerprint=fp, created=datetime.now(timezone.utc)
                                             .isoformat(), subnets=subs))


PROFILE = {"w64": 3.0, "w24": 2.0, "w8": 1.0}


@pytest.fixture()
def profiled(synthetic_artifact: Path) -> Path:
    store_profile(synthetic_artifact, PROFILE)
    return synthetic_artifact


def x_in(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def test_test_accuracy_ranks_the_subnets_when_val_disagrees(tmp_path: Path, build_artifact) -> None:
    # Validation says the middle sub-net is the best; the (larger) test measurement says the full one is.
    root = build_artifact(tmp_path / "a.slim", accuracies=(80.0, 81.0, 70.0), test_accuracies=(82.0, 80.5, 69.0))
    store_profile(root, PROFILE)
    with SlimRuntime(root, budget_ms=10.0, threads=1, adapt=False) as rt:
        assert rt.active.name == "w64" and rt.active.accuracy == 82.0
        assert [s.accuracy for s in rt.subnets] == [82.0, 80.5, 69.0]


def test_selects_by_budget_and_switches_without_reload(profiled: Path, synth) -> None:
    with SlimRuntime(profiled, budget_ms=2.5, threads=1, adapt=False) as rt:
        assert rt.latency_source == "stored"
        assert rt.active.name == "w24" and rt.active.predicted_ms == pytest.approx(2.0)
        assert rt.active.accuracy == 79.5 and rt.active.macs > 0  # test accuracy (val 80.0)
        x = x_in(2)
        y = rt(x)
        np.testing.assert_allclose(y, synth.reference_forward(profiled / "subnets/w24.onnx", x), atol=1e-4)
        sessions = [id(rt.runner(n).session) for n in ("w64", "w24", "w8")]
        rt.budget_ms = 10.0
        assert rt.active.name == "w64"
        np.testing.assert_allclose(rt(x), synth.reference_forward(profiled / "subnets/w64.onnx", x), atol=1e-4)
        rt.budget_ms = 1.0
        assert rt.active.name == "w8"
        assert [id(rt.runner(n).session) for n in ("w64", "w24", "w8")] == sessions  # nothing reloaded
        st = rt.stats()
        assert st.calls == {"w64": 1, "w24": 1, "w8": 0} and st.switches == 2 and st.budget_ms == 1.0
        assert [s.name for s in rt.subnets] == ["w64", "w24", "w8"]
        assert [s.latency.p95_ms for s in rt.subnets] == [3.0, 2.0, 1.0]


def test_bad_budget_rejected_and_unchanged(profiled: Path) -> None:
    with SlimRuntime(profiled, budget_ms=2.5, threads=1) as rt:
        for bad in (float("nan"), -1.0, 0.0, float("inf")):
            with pytest.raises(BudgetError):
                rt.budget_ms = bad
        assert rt.budget_ms == 2.5 and rt.active.name == "w24"
    with pytest.raises(BudgetError):
        SlimRuntime(profiled, budget_ms=float("nan"))


def test_infeasible_budget_serves_fastest_warns_once(profiled: Path) -> None:
    with SlimRuntime(profiled, budget_ms=0.5, threads=1, adapt=False) as rt:
        x = x_in()
        with pytest.warns(BudgetInfeasibleWarning, match="serving the fastest .*w8"):
            rt(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rt(x)
        st = rt.stats()
        assert st.active == "w8" and st.budget_infeasible == 2 and st.calls["w8"] == 2
        rt.budget_ms = 5.0
        rt(x)
        assert rt.stats().budget_infeasible == 2


def test_misses_counted_against_budget(profiled: Path) -> None:
    # Stored profile claims 1 ms for w8; a 1 microsecond budget is missed by every real call.
    with SlimRuntime(profiled, budget_ms=0.001, threads=1, adapt=False) as rt, warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetInfeasibleWarning)
        for _ in range(5):
            rt(x_in())
        assert rt.stats().misses["w8"] == 5 and rt.stats().total_misses == 5
        rt.reset_stats()
        assert rt.stats().total_calls == 0


def test_adaptation_steps_up_when_device_is_faster_than_stored(profiled: Path) -> None:
    # The stored profile claims ms-level latency; real calls take ~0.1 ms, so the estimate falls and, after the
    # hysteresis patience, the runtime serves the most accurate sub-net within the 2.5 ms budget.
    with SlimRuntime(profiled, budget_ms=2.5, threads=1) as rt:
        assert rt.active.name == "w24"
        for _ in range(200):
            rt(x_in())
        assert rt.slowdown < 0.5
        assert rt.active.name == "w64" and rt.stats().switches == 1


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([[0.0]], "expected a numpy.ndarray .* received list"),
        (np.zeros((3, 16, 16), np.float32), "expected rank 4 .* received rank 3"),
        (np.zeros((1, 3, 16, 15), np.float32), r"expected shape \['batch', 3, 16, 16\], received \[1, 3, 16, 15\]"),
        (np.zeros((1, 1, 16, 16), np.float32), "axis 1"),
        (np.zeros((1, 3, 16, 16), np.float64), "expected dtype float32 .* received float64"),
        (np.zeros((0, 3, 16, 16), np.float32), "expected batch >= 1"),
    ],
)
def test_input_errors(profiled: Path, x: object, match: str) -> None:
    with SlimRuntime(profiled, budget_ms=2.5, threads=1) as rt:
        with pytest.raises(InputError, match=match):
            rt(x)  # type: ignore[arg-type]
        assert rt.stats().total_calls == 0


def test_non_finite_check_is_optional(profiled: Path) -> None:
    x = x_in()
    x[0, 0, 0, 0] = np.nan
    with SlimRuntime(profiled, budget_ms=2.5, threads=1) as rt:
        assert np.isnan(rt(x)).any()  # unchecked by default
    with SlimRuntime(profiled, budget_ms=2.5, threads=1, check_finite=True) as rt:
        with pytest.raises(InputError, match="1 non-finite value"):
            rt(x)
        rt(x_in())


def test_fixed_batch_artifact_rejects_other_batches(tmp_path: Path, build_artifact) -> None:
    root = build_artifact(tmp_path / "fixed.slim", widths=(8, 4), dynamic_batch=False, batch=2)
    with SlimRuntime(root, budget_ms=5.0, threads=1, **FAST) as rt:
        assert rt.batch_size == 2
        assert rt(x_in(2)).shape == (2, 10)
        with pytest.raises(InputError, match="expected batch 2 .* received batch 1: .*--dynamic-batch"):
            rt(x_in(1))
    with pytest.raises(ConfigError, match="batch_size 3"):
        SlimRuntime(root, batch_size=3)


def test_stored_profile_reused_after_save(synthetic_artifact: Path) -> None:
    with SlimRuntime(synthetic_artifact, threads=1, save_profile=True, **FAST) as rt:
        assert rt.latency_source == "measured"
        measured = {s.name: s.latency for s in rt.subnets}
    m = verify_artifact(synthetic_artifact)  # the saved profile is listed and checksummed
    assert len(m.latency) == 1 and m.latency[0].backend == "onnxruntime"
    with SlimRuntime(synthetic_artifact, threads=1) as rt:
        assert rt.latency_source == "stored"
        assert {s.name: s.latency for s in rt.subnets} == measured
    # Another thread count is another fingerprint: not reused.
    with pytest.raises(ProfileError, match="no stored latency profile .* matches this device"):
        SlimRuntime(synthetic_artifact, threads=2, measure_if_missing=False)
    with SlimRuntime(synthetic_artifact, threads=2, **FAST) as rt:
        assert rt.latency_source == "measured"
    assert len(load_manifest(synthetic_artifact).latency) == 1  # save_profile defaults to False


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0xFF
    p.write_bytes(bytes(data))


def _reseal(root: Path, edit) -> None:
    import hashlib

    raw = json.loads((root / "manifest.json").read_text())
    edit(raw)
    data = json.dumps(raw).encode()
    (root / "manifest.json").write_bytes(data)
    (root / SIDECAR_NAME).write_text(hashlib.sha256(data).hexdigest() + "  manifest.json\n")


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda r: _flip_byte(r / "subnets/w24.onnx"), r"subnets/w24\.onnx: sha256"),
        (lambda r: _flip_byte(r / "subnets/weights.bin"), r"subnets/weights\.bin: sha256"),
        (lambda r: (r / "subnets/w8.onnx").unlink(), r"subnets/w8\.onnx: missing"),
        (lambda r: (r / "manifest.json").write_text((r / "manifest.json").read_text().replace("70.0", "99.0")),
         r"manifest\.json: sha256 .* does not match"),
        (lambda r: _reseal(r, lambda m: m.update(schema_version=2)),
         r"unknown schema version 2 \(this slimrt reads 1\)"),
        (lambda r: _reseal(r, lambda m: m["weights"].update(path="../weights.bin")), r"weights\.path"),
    ],
    ids=["flipped-onnx", "flipped-weights", "missing-file", "edited-manifest", "schema-version", "dotdot-path"],
)
def test_tampered_artifact_refused(synthetic_artifact: Path, tamper, match: str) -> None:
    tamper(synthetic_artifact)
    with pytest.raises(ArtifactError, match=match):
        SlimRuntime(synthetic_artifact, threads=1)


def test_close_and_context_manager(profiled: Path) -> None:
    rt = SlimRuntime(profiled, budget_ms=2.5, threads=1)
    with rt:
        rt(x_in())
    with pytest.raises(SlimrtError, match="closed"):
        rt(x_in())
    assert all(not rt.runner(n).loaded for n in ("w64", "w24", "w8"))
    rt.close()  # idempotent
    assert "closed" in repr(rt)


def test_config_errors(profiled: Path) -> None:
    with pytest.raises(ConfigError, match="quantile"):
        SlimRuntime(profiled, quantile=1.5)
    with pytest.raises(ConfigError, match="unknown device"):
        SlimRuntime(profiled, device="tpu")
    with pytest.raises(ConfigError, match="unknown backend"):
        SlimRuntime(profiled, backend="tvm")
    with pytest.raises(ConfigError, match="threads"):
        SlimRuntime(profiled, threads=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quantile": "0.9"}, ConfigError, "quantile must be a number"),
        ({"quantile": float("nan")}, ConfigError, "quantile"),
        ({"threads": 2.5}, ConfigError, "threads must be a whole number"),
        ({"threads": True}, ConfigError, "threads"),
        ({"measure_runs": 0}, ConfigError, "measure_runs"),
        ({"measure_seconds": float("inf")}, ConfigError, "measure_seconds"),
        ({"budget_ms": 10**1000}, BudgetError, "1001 digits"),
        ({"budget_ms": "5"}, BudgetError, "budget_ms"),
    ],
)
def test_wrong_argument_types_are_slimrt_errors(profiled: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        SlimRuntime(profiled, **kwargs)
    assert isinstance(info.value, SlimrtError) and str(info.value)


def test_artifact_path_none_is_a_slimrt_error() -> None:
    with pytest.raises(ConfigError, match="artifact must be the path"):
        SlimRuntime(None)  # type: ignore[arg-type]


def _run_py(code: str) -> str:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_default_threading_leaves_the_apps_own_sessions_alone(profiled: Path) -> None:
    # The default ("nospin") is per-session; the app can still open a plain InferenceSession afterwards.
    out = _run_py(
        "import numpy as np, onnxruntime as ort\n"
        "from slimrt import SlimRuntime\n"
        f"rt = SlimRuntime({str(profiled)!r}, budget_ms=2.5, threads=1)\n"
        f"s = ort.InferenceSession({str(profiled / 'subnets/w24.onnx')!r})\n"
        "x = np.ones((1, 3, 16, 16), np.float32)\n"
        "print(rt.active.name, bool(np.allclose(rt(x), s.run(None, {'input': x})[0], atol=1e-5)))\n"
    )
    assert out == "w24 True"


@pytest.mark.parametrize("mode", ["spin", "spinstop", "global"])
def test_other_threading_modes_compute_the_same(profiled: Path, mode: str) -> None:
    # Own process: the global pool is process-wide (and then forbids per-session pools, see backends/onnxrt.py).
    out = _run_py(
        "import json, numpy as np\n"
        "from slimrt import SlimRuntime\n"
        f"rt = SlimRuntime({str(profiled)!r}, budget_ms=2.5, threads=1, backend_options={{'threading': {mode!r}}})\n"
        "print(rt.active.name, json.dumps(rt(np.ones((2, 3, 16, 16), np.float32)).tolist()))\n"
    )
    name, values = out.split(" ", 1)
    with SlimRuntime(profiled, budget_ms=2.5, threads=1) as ref:
        expected = ref(np.ones((2, 3, 16, 16), np.float32))
    assert name == "w24"
    np.testing.assert_allclose(np.array(json.loads(values), np.float32), expected, atol=1e-6)


def test_global_threading_refuses_a_second_thread_count(profiled: Path) -> None:
    # One process-wide pool has one size: a 1-thread variant beside 2 threads would run on the 2-thread pool and
    # file that latency under "1 thread", so it is refused by name instead.
    out = _run_py(
        "from slimrt import SlimRuntime\n"
        "from slimrt.errors import ConfigError\n"
        "try:\n"
        f"    SlimRuntime({str(profiled)!r}, budget_ms=2.5, threads=(2, 1),\n"
        "                backend_options={'threading': 'global'})\n"
        "except ConfigError as e:\n"
        "    print('ConfigError', e)\n"
        "else:\n"
        "    print('no error')\n"
    )
    assert out.startswith("ConfigError threading 'global'"), out
    assert "threads=1" in out
