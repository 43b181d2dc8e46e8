"""``slimrt export`` through typer's CliRunner: success, failure exit codes, and the clear one-sentence errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from slimrt.artifact import verify_artifact
from slimrt.cli.app import app
from slimrt.errors import BackendUnavailableError, CheckpointError, ConfigError, ValidationMismatchError
from slimrt.exporters.tensorrt import TENSORRT_MISSING

runner = CliRunner()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


class Payload:
    """Pickled as code (a GLOBAL reference): weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def _invoke(*args: str):
    return runner.invoke(app, ["export", *args])


def test_cli_json_summary_and_atol_mismatch(trained_model, tmp_path):
    out = tmp_path / "cli.slim"
    res = _invoke(str(trained_model.path), "-o", str(out), "--subnets", "tiny", "--validation-samples", "0",
                  "--atol", "1e-12")
    assert res.exit_code == 1 and isinstance(res.exception, ValidationMismatchError)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".cli.slim")]

    res = _invoke(str(trained_model.path), "-o", str(out), "--subnets", "tiny", "--validation-samples", "0",
                  "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["ok"] and [s["name"] for s in summary["subnets"]] == ["tiny"]
    assert summary["subnets"][0]["max_abs_diff"] <= 1e-4
    assert verify_artifact(out).subnets[0].name == "tiny"


def test_cli_refuses_existing_then_force_replaces(exported_artifact, trained_model, tmp_path):
    out = tmp_path / "a.slim"
    shutil.copytree(exported_artifact[0], out)
    res = _invoke(str(trained_model.path), "-o", str(out))
    assert res.exit_code == 1 and "already exists; pass --force" in str(res.exception)
    assert [s.name for s in verify_artifact(out).subnets] == ["full", "w75", "tiny"]
    res = _invoke(str(trained_model.path), "-o", str(out), "--force", "--subnets", "tiny",
                  "--validation-samples", "0", "--atol", "1e-12", "--allow-mismatch")
    assert res.exit_code == 0, res.output
    m = verify_artifact(out)
    assert [s.name for s in m.subnets] == ["tiny"] and m.subnets[0].max_abs_diff > 1e-12
    assert "over atol" in res.stdout


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_cli_tensorrt_missing_is_one_clear_sentence(trained_model, tmp_path):
    res = _invoke(str(trained_model.path), "-o", str(tmp_path / "t.slim"), "--tensorrt")
    assert res.exit_code == 1 and isinstance(res.exception, BackendUnavailableError)
    assert str(res.exception) == TENSORRT_MISSING
    assert not (tmp_path / "t.slim").exists()
    res = _invoke("--engines-only", str(tmp_path), "--tensorrt")
    assert isinstance(res.exception, BackendUnavailableError) and str(res.exception) == TENSORRT_MISSING


def test_cli_usage_errors(tmp_path):
    res = _invoke("--engines-only", str(tmp_path))
    assert res.exit_code == 1 and isinstance(res.exception, ConfigError) and "--tensorrt" in str(res.exception)
    res = _invoke(str(tmp_path / "model.pt"))
    assert isinstance(res.exception, ConfigError) and "usage" in str(res.exception)
    res = _invoke(str(tmp_path / "model.pt"), "-o", str(tmp_path / "x.slim"), "--fp16")
    assert isinstance(res.exception, ConfigError) and "--tensorrt" in str(res.exception)


def test_cli_refuses_checkpoint_with_pickled_code(tmp_path):
    evil = tmp_path / "model.pt"
    torch.save({"format": "slimrt-checkpoint", "version": 1, "payload": Payload()}, evil)
    res = _invoke(str(evil), "-o", str(tmp_path / "x.slim"))
    assert res.exit_code == 1 and isinstance(res.exception, CheckpointError)
    assert "pickled code" in str(res.exception)
    assert "this ran while loading" not in res.output
    assert not (tmp_path / "x.slim").exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason=TENSORRT_MISSING)
def test_engines_only_adds_engine_set(exported_artifact, tmp_path):
    root = tmp_path / "trt.slim"
    shutil.copytree(exported_artifact[0], root)
    res = _invoke("--engines-only", str(root), "--tensorrt", "--json")
    assert res.exit_code == 0, res.output
    m = verify_artifact(root)
    (es,) = m.engines
    assert es.precision == "fp32" and {e.subnet for e in es.engines} == {s.name for s in m.subnets}
    assert all((root / e.path).is_file() for e in es.engines)
    assert Path(root / f"engines/{es.device_tag}").is_dir()
