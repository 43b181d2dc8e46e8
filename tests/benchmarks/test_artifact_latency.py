"""benchmarks/artifact_latency.py: issue 11's goals read with `slimrt bench` on each family's own artifact."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_aggregate import arch_key  # noqa: E402
from artifact_latency import REF, combine, compare, plan_artifacts, run, usnet_chunks, with_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "benchmarks" / "results" / "accuracy" / "standard-resnet20" / "pretrained-seed0.pt"
GROUPS = {"conv1": 16, "layer1.0.conv1": 16, "layer1.1.conv1": 16, "layer1.2.conv1": 16,
          "layer2.0.downsample.0": 32, "layer2.0.conv1": 32, "layer2.1.conv1": 32, "layer2.2.conv1": 32,
          "layer3.0.downsample.0": 64, "layer3.0.conv1": 64, "layer3.1.conv1": 64, "layer3.2.conv1": 64}  # fmt: skip


def _uniform(c: int, acc: float) -> dict:
    w = {g: max(1, round(full * c / 64)) for g, full in GROUPS.items()}
    return {"name": f"w{c}", "widths": w, "macs": 31_000_000 * c * c // 4096, "params": 1000 * c, "test_accuracy": acc}


def _runs(grid_channels=(64, 48, 32, 16), family=None) -> dict:
    grid = [_uniform(c, 80.0 + c / 4) for c in grid_channels]
    fam = family or [{**_uniform(48, 93.0), "name": "m60"}, {**_uniform(24, 92.0), "name": "m20"}]
    return {"usnet": {0: {"method": "usnet", "seed": 0, "grid": grid, "subnets": grid[:1]}},
            "progressive": {0: {"method": "progressive", "seed": 0, "subnets": fam}}}  # fmt: skip


def test_usnet_widths_are_dealt_into_artifacts_that_each_span_the_range():
    grid = [_uniform(c, 90.0) for c in range(16, 65)]  # 49 widths, as the standard grid
    chunks = usnet_chunks(grid, per=6)
    assert len(chunks) == 9 and sorted(len(c) for c in chunks) == [5] * 5 + [6] * 4
    names = [g["name"] for c in chunks for g in c]
    assert sorted(names) == sorted(g["name"] for g in grid) and len(set(names)) == 49  # each width exactly once
    for c in chunks:  # every artifact holds large and small widths, largest first
        macs = [g["macs"] for g in c]
        assert macs == sorted(macs, reverse=True) and macs[0] > 0.6 * grid[-1]["macs"] and macs[-1] < 0.2 * grid[-1][
            "macs"]


def test_the_full_network_is_added_as_reference_only_when_missing():
    full = _uniform(64, 93.5)
    half = {**_uniform(32, 91.0), "name": "m25"}
    assert [s["name"] for s in with_reference([half], full["widths"], full)] == ["m25", REF]
    assert [s["name"] for s in with_reference([full, half], full["widths"], full)] == ["w64", "m25"]
    arts = plan_artifacts(_runs())
    fam = next(a for a in arts if a["kind"] == "family")
    assert fam["id"] == "progressive-seed0" and [s["name"] for s in fam["subnets"]] == ["m60", "m20", REF]
    us = [a for a in arts if a["kind"] == "usnet"]
    assert len(us) == 1 and [s["name"] for s in us[0]["subnets"]] == ["w64", "w48", "w32", "w16"]


def _window(scale: float, lat: dict[str, float], t1: dict[str, float] | None = None) -> dict:
    cells = {k: {"p50": v * scale, "p95": v * scale * 1.2} for k, v in lat.items()}
    for k, v in (t1 or {}).items():
        cells[k]["p50_t1"] = v * scale
    return {"artifacts": {"a": {"subnets": cells}}}


def test_each_latency_is_read_against_its_own_bench_full_network():
    full = _uniform(64, 93.0)["widths"]
    fk, hk = arch_key(full), arch_key(_uniform(32, 0)["widths"])
    # the second window ran everything twice as slow, the third 3x: the ratios do not move
    windows = [_window(s, {fk: 0.8, hk: 0.4}, {fk: 0.9, hk: 0.3}) for s in (1.0, 2.0, 3.0)]
    lat, f = combine(windows, full)
    assert f == pytest.approx(1.6)  # median full-network p50 over the benches
    assert lat["a"][hk]["ratio"] == pytest.approx(0.5) and lat["a"][hk]["b1_p50"] == pytest.approx(0.8)
    assert lat["a"][fk]["b1_p50"] == pytest.approx(1.6) and lat["a"][hk]["windows"] == 3
    best, _ = combine(windows, full, "best")  # per sub-net the faster thread count, still over the profile's full
    assert best["a"][hk]["ratio"] == pytest.approx(0.3 / 0.8) and best["a"][fk]["ratio"] == pytest.approx(1.0)
    no_ref = [{"artifacts": {"b": {"subnets": {hk: {"p50": 0.4, "p95": 0.5}}}}}]
    assert combine(no_ref, full) == ({}, None)  # a bench without the full network has no reference: not read
    # windows name each artifact's sub-nets; the plan maps the names to architectures
    half = _uniform(32, 0)["widths"]
    arts = [{"id": "a", "subnets": [{"name": "w64", "widths": full}, {"name": "w32", "widths": half}]}]
    named = [{"artifacts": {"a": {"subnets": {"w64": w["artifacts"]["a"]["subnets"][fk],
                                              "w32": w["artifacts"]["a"]["subnets"][hk]}}}} for w in windows]
    assert combine(named, full, "best", arts) == combine(windows, full, "best")


def test_a_family_is_compared_with_its_own_artifact_and_the_usnet_artifacts():
    runs = _runs()
    arts = plan_artifacts(runs)
    k = {c: arch_key(_uniform(c, 0)["widths"]) for c in (64, 48, 32, 24, 16)}
    lat = {"progressive-seed0": {k[48]: {"b1_p50": 0.55}, k[24]: {"b1_p50": 0.30}, k[64]: {"b1_p50": 0.8}},
           "usnet-0": {k[64]: {"b1_p50": 0.8}, k[48]: {"b1_p50": 0.7}, k[32]: {"b1_p50": 0.5},
                       k[16]: {"b1_p50": 0.29}}}  # fmt: skip
    fams = compare(runs, arts, lat)
    rows = fams["progressive"]["per_seed"][0]
    # m60 (0.55 ms) matches w32 (0.5 ms; w48 at 0.7 ms is slower), m20 (0.30 ms) matches w16
    assert [r["usnet_at_latency"]["name"] for r in rows] == ["w32", "w16"]
    assert rows[0]["gap_at_latency"] == pytest.approx(93.0 - 88.0) and rows[1]["gap_at_latency"] == pytest.approx(8.0)
    assert fams["progressive"]["goals"]["b1_p50_span"]["mean"] == pytest.approx(0.55 / 0.30)
    del lat["progressive-seed0"][k[24]]  # a sub-net its artifact never measured: the seed is not read
    assert compare(runs, arts, lat) == {}


@pytest.mark.skipif(not PRETRAINED.is_file(), reason="needs the stored pre-trained network")
def test_artifacts_are_built_benched_and_windows_add_up(tmp_path):
    pytest.importorskip("torch")
    results, work = tmp_path / "results", tmp_path / "work"
    results.mkdir()
    shutil.copy(PRETRAINED, results / PRETRAINED.name)
    for method, seeds in _runs(grid_channels=(64, 16)).items():
        for seed, r in seeds.items():
            (results / f"{method}-seed{seed}.json").write_text(json.dumps(r))
    argv = ["--results", str(results), "--work-dir", str(work), "--thread-variant", "1"]
    first = run(argv)
    path = next(results.glob("artifact-latency*.json"))
    assert path.with_suffix(".md").is_file() and (work / "artifact-latency.log").is_file()
    built = sorted(work.glob("*.slim"))
    assert [p.name.split("-")[0] for p in built] == ["progressive", "usnet"]
    names = [s["name"] for s in json.loads((built[0] / "manifest.json").read_text())["subnets"]]
    assert names == [REF, "m60", "m20"]  # largest first, as every manifest
    fam = first["families"]["profile"]["progressive"]
    # real ONNX Runtime sessions of a real network: the 24-channel sub-net runs faster than the full one
    lat = first["latency"]["profile"]["progressive-seed0"]
    full = arch_key(_uniform(64, 0)["widths"])
    assert lat[full]["ratio"] == pytest.approx(1.0) and lat[arch_key(_uniform(24, 0)["widths"])]["ratio"] < 0.9
    assert fam["goals"]["b1_p50_span"]["mean"] > 1.1 and len(first["windows"]) == 1
    assert set(first["windows"][0]["artifacts"]["progressive-seed0"]["subnets"]) == {REF, "m60", "m20"}  # by name
    assert "p50_t1" in first["windows"][0]["artifacts"]["progressive-seed0"]["subnets"][REF]
    stamps = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in built}
    second = run(argv)  # the same command again: one more window, the cached artifacts reused
    assert len(second["windows"]) == 2 and {p.name: (p / "manifest.json").stat().st_mtime_ns for p in built} == stamps
    assert len(run([*argv, "--stored"])["windows"]) == 2  # tables only: nothing measured
    onnx = next(built[0].rglob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"tampered")  # a damaged cached artifact is verified and rebuilt
    assert len(run(argv)["windows"]) == 3 and (built[0] / "manifest.json").stat().st_mtime_ns != stamps[built[0].name]


@pytest.mark.parametrize(("extra", "message"), [
    (["--windows", "0"], "--windows must be >= 1"),
    (["--families", "progressive,bogus"], "unknown ['bogus']"),
    (["--stored", "--build-only"], "exclude each other"),
])  # fmt: skip
def test_bad_options_are_named(tmp_path, capsys, extra, message):
    for method, seeds in _runs().items():
        for seed, r in seeds.items():
            (tmp_path / f"{method}-seed{seed}.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit):
        run(["--results", str(tmp_path), "--work-dir", str(tmp_path / "w"), *extra])
    assert message in capsys.readouterr().err


def test_stored_without_windows_and_missing_folders_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(["--results", str(tmp_path / "nope")])
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "usnet-seed0.json").write_text(json.dumps(_runs()["usnet"][0]))
    with pytest.raises(SystemExit):
        run(["--results", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--stored"])
    assert "holds no window" in capsys.readouterr().err
