"""The latency-table benchmark's error summaries (benchmarks/latency_table.py), on hand-made rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from latency_table import full_spread, main, ratio_errors  # noqa: E402


def _row(name: str, pred: float, meas: float, full_beside: float | None = None) -> dict:
    r = {"name": name, "predicted_ms": pred, "measured_p50_ms": meas}
    if full_beside is not None:
        r["beside_full"] = {"measured_p50_ms": meas, "full_p50_ms": full_beside}
    return r


def test_ratio_errors_cancel_a_drift_shared_by_every_measurement() -> None:
    # the machine ran 20% slower for the end-to-end pass: absolute errors are all -1/6, relative ones vanish
    rows = [_row("full", 1.0, 1.2), _row("a", 0.5, 0.6), _row("b", 0.25, 0.3)]
    r = ratio_errors(rows)
    assert r["median_rel_error"] == pytest.approx(0.0, abs=1e-12)
    assert r["max_rel_error"] == pytest.approx(0.0, abs=1e-12)
    rows[2]["measured_p50_ms"] = 0.4  # b really is a third slower than predicted, relative to the full network
    r = ratio_errors(rows)
    assert r["max_rel_error"] == pytest.approx(abs((0.25 / 1.0) / (0.4 / 1.2) - 1))
    assert r["median_rel_error"] == pytest.approx(0.125)  # median of 0 and 0.25


def test_full_spread_reads_the_full_network_of_every_pair() -> None:
    rows = [_row("full", 1.0, 1.0), _row("a", 0.5, 0.5, 0.8), _row("b", 0.5, 0.5, 1.2), _row("c", 0.5, 0.5, 1.0)]
    s = full_spread(rows)
    assert (s["min_ms"], s["median_ms"], s["max_ms"]) == (0.8, 1.0, 1.2)
    assert s["max_over_min"] == pytest.approx(1.5)


def test_rescore_scores_a_stored_table_relative_to_the_full_network(tmp_path, capsys) -> None:
    """``--rescore``: the committed search table against sub-nets whose 'measured' latency is its own prediction
    slowed by a drift shared by all (error 0) except one really 25% slower than predicted."""
    import json

    import torch

    from slimrt.models.registry import create_model
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.latency import LatencyPredictor, load_latency_table

    table = Path(__file__).resolve().parents[2] / "benchmarks/results/accuracy/standard-resnet20/latency-table-cpu.json"
    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28))
    pred = LatencyPredictor(net, load_latency_table(table))
    specs = [net.full_spec("full"), net.uniform_spec(0.5, "a"), net.uniform_spec(0.75, "b"), net.uniform_spec(0.3, "c")]
    rows = [{"name": s.name, "widths": s.widths, "measured_p50_ms": 1.2 * pred.ms(s) * (1.25 if s.name == "c" else 1)}
            for s in specs]  # fmt: skip
    result = tmp_path / "run.json"
    result.write_text(json.dumps({"rows": rows, "median_rel_error": 0.5}))
    out = main(["--rescore", str(result), "--score-table", str(table)])
    e = out["stored_tables"]["latency-table-cpu.json"]
    assert e["subnets"] == 3 and e["median_rel_error"] == pytest.approx(0.0, abs=1e-9)
    assert e["max_rel_error"] == pytest.approx(1 - 1 / 1.25)
    saved = json.loads(result.read_text())
    assert saved["stored_tables"] == out["stored_tables"] and saved["median_rel_error"] == 0.5  # the rest kept
    assert saved["rescored_by"] == [f"python benchmarks/latency_table.py --rescore {result} --score-table {table}"]
    assert "stored table latency-table-cpu.json" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--rescore", str(result)])  # nothing to score


def test_calibration_networks_are_never_the_random_sub_nets_the_benchmarks_judge() -> None:
    """``slimrt latency-table --calibrate N`` fits on its own random networks; the table's benchmark and the
    aggregate's probes draw theirs from the same seed, so the two streams must differ (they once coincided)."""
    import torch
    from _common import random_unit_grid_widths

    from slimrt.cli.latency_table import calibration_widths
    from slimrt.models.registry import create_model
    from slimrt.train.dynamic import DynamicNet

    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28))
    cal = calibration_widths(net, 16)
    assert len(cal) == 16 and cal == calibration_widths(net, 16)  # reproducible
    groups = {g.name: g.channels for g in net.prunable_groups}
    randoms = cal[8:]
    assert all(set(w) == set(groups) and all(0 < w[g] <= groups[g] for g in groups) for w in randoms)
    probes = random_unit_grid_widths(net, 24, 0)
    assert not [w for w in randoms if w in probes]
    assert len({tuple(sorted(w.items())) for w in randoms}) > 1


@pytest.mark.parametrize("argv", [["--fit", "nope"], ["--calibrate", "-1"]])
def test_calibrate_options_are_checked_before_anything_is_measured(argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and ("--fit" in capsys.readouterr().err or "--calibrate" in argv)
