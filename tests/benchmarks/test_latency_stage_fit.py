"""benchmarks/latency_stage_fit.py on a hand-made two-stage table and an aggregate whose latencies it generated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from latency_stage_fit import PROBES, main, stage_sums  # noqa: E402

from slimrt.schema import DeviceFingerprint, LatencyLayer, LatencyPart, LatencyTable, part_stage  # noqa: E402


def _table() -> LatencyTable:
    g = [4, 8, 12, 16, 24, 32]
    ms = [[0.001 * i * o + 0.01 for o in g] for i in g]
    parts = [LatencyPart(key="conv3x3s1p1-16x32@16x16-g4x4", in_grid=g, out_grid=g, ms=ms),
             LatencyPart(key="conv3x3s2p1-32x32@8x8-g4x4", in_grid=g, out_grid=g, ms=ms),
             LatencyPart(key="linear-32x10-g4x1", in_grid=g, out_grid=[10], ms=[[0.001] for _ in g])]
    layers = [LatencyLayer(name="c1", part=parts[0].key, inputs=[("g1", 16)], outputs=[("g2", 32)]),
              LatencyLayer(name="c2", part=parts[1].key, inputs=[("g2", 32)], outputs=[("g3", 32)]),
              LatencyLayer(name="fc", part=parts[2].key, inputs=[("g3", 32)], outputs=[("out", 10)])]  # fmt: skip
    return LatencyTable(device="cpu", fingerprint=DeviceFingerprint(cpu_model="t", cpu_cores=1,
                                                                    backend="onnxruntime"),
                        created="now", input_shape=[1, 16, 16], groups={"g1": 16, "g2": 32, "g3": 32, "out": 10},
                        fixed_ms=0.05, parts=parts, layers=layers)  # fmt: skip


def test_per_stage_scales_are_recovered_and_judged_on_the_probes(tmp_path: Path) -> None:
    t = _table()
    assert t.stages() == ["16x16", "8x8"] and part_stage("linear-32x10-g4x1") is None
    (tmp_path / "table.json").write_text(t.model_dump_json())

    def truth(w: dict[str, int]) -> float:  # the first stage runs at half its layers' time alone, the second at 1.2x
        _, s1, s2 = stage_sums(t, w, ["16x16", "8x8"])
        return 0.07 + 0.5 * s1 + 1.2 * s2

    nets = [{"g1": a, "g2": b, "g3": c} for a in (4, 8, 16) for b in (8, 16, 32) for c in (8, 32)]
    probes = [{"g1": 12, "g2": 24, "g3": 12}, {"g1": 4, "g2": 12, "g3": 24}]
    lat = {",".join(f"{g}={v}" for g, v in w.items()): {"widths": w, "b1_p50": truth(w)} for w in nets}
    rows = [{"name": f"p{i}", "widths": w, "measured_ms": truth(w), "windows": 3} for i, w in enumerate(probes)]
    agg = {"latency": lat, "latency_windows": [{}, {}, {}],
           "predictor_checks": {"t.json": {"families": {PROBES: {"rows": rows}}}}}  # fmt: skip
    (tmp_path / "aggregate.json").write_text(json.dumps(agg))
    out, out_table = tmp_path / "fit.json", tmp_path / "fitted.json"
    res = main(["--aggregate", str(tmp_path / "aggregate.json"), "--table", str(tmp_path / "table.json"),
                "--out", str(out), "--out-table", str(out_table)])  # fmt: skip
    assert res["fit"]["scales"] == {"16x16": pytest.approx(0.5), "8x8": pytest.approx(1.2)}
    assert res["fit"]["offset_ms"] == pytest.approx(0.07) and res["fit"]["networks"] == 18
    assert res["probes"]["stage_fit"]["max_abs"] == pytest.approx(0.0, abs=1e-9)
    assert res["probes"]["table_as_is"]["max_rel_to_full"] > 0.05  # one scale for both stages cannot do it
    assert res["probes"]["n"] == 2 and res["probes"]["windows"] == [3] and res["windows"] == 3
    assert json.loads(out.read_text())["table"] == "table.json"
    # The written table predicts with the fitted stage scales: every network and probe as generated.
    fitted = LatencyTable.model_validate_json(out_table.read_text())
    assert fitted.stage_scales == {"16x16": pytest.approx(0.5), "8x8": pytest.approx(1.2)}
    assert all(fitted.predict_ms(w) == pytest.approx(truth(w)) for w in [*nets, *probes])


def test_an_aggregate_without_probes_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "table.json").write_text(_table().model_dump_json())
    (tmp_path / "aggregate.json").write_text(json.dumps({"latency": {"g1=16": {"widths": {"g1": 16}, "b1_p50": 1}}}))
    with pytest.raises(SystemExit, match="probes"):
        main(["--aggregate", str(tmp_path / "aggregate.json"), "--table", str(tmp_path / "table.json"),
              "--out", str(tmp_path / "o.json")])  # fmt: skip
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--aggregate", str(tmp_path / "missing.json"), "--table", str(tmp_path / "table.json")])
