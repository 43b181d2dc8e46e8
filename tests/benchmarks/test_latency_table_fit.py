"""benchmarks/latency_table_fit.py on a hand-made table and an aggregate whose latencies it generated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from latency_table_fit import is_uniform, main  # noqa: E402

from slimrt.schema import DeviceFingerprint, LatencyLayer, LatencyPart, LatencyTable  # noqa: E402


def _table() -> LatencyTable:
    g = [4, 8, 12, 16, 24, 32]
    part = LatencyPart(key="a", in_grid=g, out_grid=g, ms=[[0.001 * i * o + 0.01 for o in g] for i in g])
    layers = [LatencyLayer(name="c1", part="a", inputs=[("g1", 16)], outputs=[("g2", 32)]),
              LatencyLayer(name="c2", part="a", inputs=[("g2", 32)], outputs=[("g2", 32)])]  # fmt: skip
    return LatencyTable(device="cpu", fingerprint=DeviceFingerprint(cpu_model="t", cpu_cores=1,
                                                                    backend="onnxruntime"),
                        created="now", input_shape=[1, 8, 8], groups={"g1": 16, "g2": 32}, fixed_ms=0.05,
                        parts=[part], layers=layers)  # fmt: skip


def test_refits_the_table_on_the_aggregates_latencies(tmp_path: Path) -> None:
    t = _table()
    (tmp_path / "table.json").write_text(t.model_dump_json())
    truth = t.model_copy(update={"align": 8, "aligned_scale": 0.6, "scale": 1.4, "other_ms": 0.03})
    nets = [{"g1": a, "g2": b} for a in (4, 8, 12, 16) for b in (4, 8, 12, 16, 24, 32)]
    lat = {",".join(f"{g}={c}" for g, c in w.items()): {"b1_p50": truth.predict_ms(w)} for w in nets}
    (tmp_path / "aggregate.json").write_text(json.dumps({"latency": lat, "machine": {"cpu": "t"}}))
    out, out_table = tmp_path / "fit.json", tmp_path / "fitted.json"
    res = main(["--aggregate", str(tmp_path / "aggregate.json"), "--table", str(tmp_path / "table.json"),
                "--out", str(out), "--out-table", str(out_table)])  # fmt: skip
    fitted = LatencyTable.model_validate_json(out_table.read_text())
    assert (fitted.align, fitted.aligned_scale, fitted.scale) == (8, pytest.approx(0.6), pytest.approx(1.4))
    assert res["table_as_is"]["all"]["median_rel_error"] > 0.05 > res["fitted_on_all"]["loo_max_rel_error"]
    assert res["networks"] == {"all": 24, "uniform": 4, "searched": 20}  # g2 = 2 x g1: (4, 8) ... (16, 32)
    assert "skipped" in res["holdout"]["fit_on_uniform_judge_searched"]  # 4 networks cannot fit 3 numbers safely
    assert json.loads(out.read_text())["fitted_on_all"]["networks"] == 24


def test_uniform_means_one_width_fraction_for_every_group() -> None:
    groups = {"g1": 16, "g2": 32, "out": 10}
    assert is_uniform({"g1": 11, "g2": 22}, groups) and is_uniform({"g1": 16, "g2": 32}, groups)
    assert not is_uniform({"g1": 8, "g2": 32}, groups)
