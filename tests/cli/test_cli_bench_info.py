"""``slimrt bench`` and ``slimrt info`` driven through typer's CliRunner on a real (synthetic) artifact."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slimrt.artifact import load_manifest
from slimrt.cli.app import app
from slimrt.errors import ArtifactError, ProfileError

runner = CliRunner()

SUBNET_KEYS = {"name", "macs", "test_accuracy", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "cv"}


def _fast_profile(tmp_path: Path) -> Path:
    f = tmp_path / "fast-cpu.toml"
    f.write_text('name = "fast-cpu"\ndevice = "cpu"\nwarmup = 2\nruns = 10\n', encoding="utf-8")
    return f


def test_bench_writes_json_plot_and_stored_profile(synthetic_artifact: Path, tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "pareto.png"
    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--device", "cpu", "--runs", "12", "--out",
                              str(out_json), "--plot", str(out_png)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "w64" in res.output and "speed-up" in res.output  # the table

    data = json.loads(out_json.read_text())
    assert {"device", "fingerprint", "subnets"} <= set(data)
    assert data["device"] == "cpu"
    assert data["fingerprint"]["backend"] == "onnxruntime"
    manifest = load_manifest(synthetic_artifact)
    assert [s["name"] for s in data["subnets"]] == [s.name for s in manifest.subnets]
    for row, entry in zip(data["subnets"], manifest.subnets, strict=True):
        assert SUBNET_KEYS <= set(row)
        assert row["macs"] == entry.macs and row["test_accuracy"] == entry.test_accuracy
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["runs"] == 12
    assert [r.fingerprint for r in manifest.latency] == [data["fingerprint_id"]]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000

    info = runner.invoke(app, ["info", str(synthetic_artifact), "--json"])
    assert info.exit_code == 0, info.output
    dumped = json.loads(info.output)
    assert dumped["manifest"]["subnets"][0]["name"] == "w64"
    assert [p["fingerprint_id"] for p in dumped["latency_profiles"]] == [data["fingerprint_id"]]
    stored = {s["name"]: s for s in dumped["latency_profiles"][0]["subnets"]}
    assert {n: stored[n]["p95_ms"] for n in stored} == {r["name"]: r["p95_ms"] for r in data["subnets"]}


def test_bench_no_save_and_custom_profile(synthetic_artifact: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--device-profile",
                              str(_fast_profile(tmp_path)), "--threads", "1", "--no-save", "-q", "--out",
                              str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert res.output == ""  # quiet
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["device_profile"] == "fast-cpu" and data["threads"] == 1 and data["saved_to"] is None
    assert all(s["runs"] == 10 for s in data["subnets"])
    assert load_manifest(synthetic_artifact).latency == []


def test_bench_json_prints_the_result_and_nothing_else(synthetic_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--device-profile", str(_fast_profile(tmp_path)),
                              "--no-save", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output)  # stdout is exactly one JSON document: no table, no progress, no "wrote"
    assert printed == json.loads(out.read_text())
    assert printed["device_profile"] == "fast-cpu" and [s["name"] for s in printed["subnets"]] == ["w64", "w24", "w8"]


def test_bench_bad_profile_names_the_file(synthetic_artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text('name = "x"\ndevice = "cpu"\nwarmups = 3\n', encoding="utf-8")
    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--profile", str(bad)])
    assert res.exit_code != 0
    assert isinstance(res.exception, ProfileError)
    assert "typo.toml" in str(res.exception) and "warmups" in str(res.exception)


def test_info_table_lists_subnets_and_profiles(synthetic_artifact: Path, tmp_path: Path) -> None:
    empty = runner.invoke(app, ["info", str(synthetic_artifact)])
    assert empty.exit_code == 0, empty.output
    assert "No stored latency profiles" in empty.output
    for name in ("w64", "w24", "w8"):
        assert name in empty.output

    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--profile", str(_fast_profile(tmp_path)), "-q",
                              "--out", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    fid = json.loads((tmp_path / "b.json").read_text())["fingerprint_id"]
    info = runner.invoke(app, ["info", str(synthetic_artifact)], env={"COLUMNS": "200"})
    assert info.exit_code == 0, info.output
    assert fid in info.output and "onnxruntime" in info.output
    assert "89.50" in info.output  # w64's test accuracy from the manifest


def test_info_refuses_a_tampered_artifact(synthetic_artifact: Path) -> None:
    (synthetic_artifact / "manifest.json").write_text(
        (synthetic_artifact / "manifest.json").read_text().replace('"w8"', '"w9"'), encoding="utf-8"
    )
    res = runner.invoke(app, ["info", str(synthetic_artifact), "--json"])
    assert res.exit_code != 0
    assert isinstance(res.exception, ArtifactError)
    assert "manifest.json" in str(res.exception)


def test_bench_thread_variants_flag(synthetic_artifact: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", str(synthetic_artifact), "--device-profile", str(_fast_profile(tmp_path)),
                              "--threads", "2", "--thread-variants", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [v["threads"] for v in data["thread_variants"]] == [1]
    bad = runner.invoke(app, ["bench", str(synthetic_artifact), "--device-profile", str(_fast_profile(tmp_path)),
                              "--thread-variants", "one", "--no-save"])
    assert bad.exit_code != 0 and "thread counts" in bad.output
