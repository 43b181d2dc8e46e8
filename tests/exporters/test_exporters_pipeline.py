"""The export pipeline on a real trained checkpoint: verification, fidelity, accuracy, disk size, safety."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from slimrt.artifact import load_manifest, verify_artifact
from slimrt.errors import ArtifactError, ConfigError, ExportError, ValidationMismatchError
from slimrt.exporters import ExportOptions, export_artifact
from slimrt.exporters.onnx import export_module, graph_opset
from slimrt.exporters.validate import onnx_runner, run_batched
from slimrt.schema import SCHEMA_VERSION
from slimrt.train import load_checkpoint
from slimrt.train.data import load_dataset


def _leftovers(parent: Path, name: str) -> list[str]:
    """Hidden leftovers of a killed export (the staging folder's sibling ``.lock`` file not counted)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.") and p.suffix != ".lock")


def test_artifact_verifies_and_manifest_is_complete(exported_artifact, trained_model):
    root, result = exported_artifact
    m = verify_artifact(root)
    ckpt = load_checkpoint(trained_model.path)
    assert m.schema_version == SCHEMA_VERSION and result.ok
    assert m.producer.torch == torch.__version__ and m.producer.onnx == onnx.__version__ and m.producer.onnxruntime
    assert m.arch == "resnet20" and m.opset == result.opset and m.dynamic_batch is False
    assert m.input.shape == [1, *ckpt.input_shape] and m.input.layout == "NCHW" and m.input.dtype == "float32"
    assert m.input.mean == list(ckpt.mean) and m.input.std == list(ckpt.std)
    assert m.output.shape == [1, 10]
    assert m.weights.path == "subnets/weights.bin"
    assert [s.name for s in m.subnets] == [s.name for s in ckpt.subnets]
    macs = [s.macs for s in m.subnets]
    assert macs == sorted(macs, reverse=True)  # largest first
    for entry, spec in zip(m.subnets, ckpt.subnets, strict=True):
        assert entry.onnx.path == f"subnets/{entry.name}.onnx"
        assert entry.spec() == spec
        assert entry.max_abs_diff is not None and 0 <= entry.max_abs_diff <= 1e-4
    assert "fashion-mnist test images" in result.validation_inputs


def test_every_subnet_reproduces_pytorch(exported_artifact, trained_model):
    root, _ = exported_artifact
    m = load_manifest(root)
    net = load_checkpoint(trained_model.path).dynamic_net()
    x = torch.randn(24, *net.input_shape, generator=torch.Generator().manual_seed(123)) * 2
    for entry in m.subnets:
        with torch.no_grad(), net.use(entry.spec()):
            ref = net(x).numpy()
        out = run_batched(onnx_runner(root / entry.onnx.path), x.numpy())
        assert np.abs(out - ref).max() <= 1e-4, entry.name


def test_onnxruntime_accuracy_equals_manifest(exported_artifact, trained_model):
    root, _ = exported_artifact
    m = load_manifest(root)
    ds = load_dataset("fashion-mnist", val_size=500, limit_train=10)
    x = ds.x_test[: trained_model.test_slice].numpy()
    y = ds.y_test[: trained_model.test_slice].numpy()
    accs = {}
    for entry in m.subnets:
        pred = run_batched(onnx_runner(root / entry.onnx.path), x).argmax(1)
        accs[entry.name] = 100.0 * float(np.mean(pred == y))
        assert entry.test_accuracy is not None
        assert accs[entry.name] == pytest.approx(entry.test_accuracy, abs=1e-4), entry.name
    assert accs["full"] > 20.0  # trained, not chance (10 classes)


def test_weights_stored_once_disk_budget(exported_artifact, trained_model):
    root, result = exported_artifact
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total == result.total_bytes
    ckpt = load_checkpoint(trained_model.path)
    net = ckpt.dynamic_net()
    plain = export_module(net.extract(ckpt.subnets[0]), torch.zeros(1, *ckpt.input_shape), keep_batchnorm=False)
    one_full_export = len(plain.SerializeToString())
    assert total <= 1.15 * one_full_export, (total, one_full_export)
    # every sub-net's shared tensors point into weights.bin, inside the file
    size = (root / "subnets/weights.bin").stat().st_size
    for entry in load_manifest(root).subnets:
        model = onnx.load(root / entry.onnx.path, load_external_data=False)
        ext = [i for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
        assert ext, entry.name
        for t in ext:
            info = {e.key: e.value for e in t.external_data}
            assert info["location"] == "weights.bin"
            assert int(info["offset"]) % 64 == 0 and int(info["offset"]) + int(info["length"]) <= size


def test_dynamic_batch_and_torch_programs(trained_model, tmp_path):
    from slimrt.exporters.torch_program import load_program

    out = tmp_path / "dyn.slim"
    opts = ExportOptions(subnets=["tiny"], dynamic_batch=True, torch_programs=True, validation_samples=0, opset=18)
    result = export_artifact(trained_model.path, out, opts)
    m = verify_artifact(out)
    assert m.dynamic_batch and m.input.shape[0] == "batch" and m.output.shape == ["batch", 10]
    assert m.opset == result.opset == 18
    assert graph_opset(onnx.load(out / m.subnets[0].onnx.path, load_external_data=False)) == 18
    assert [s.name for s in m.subnets] == ["tiny"] and result.validation_inputs.startswith("random only")
    entry = m.subnets[0]
    assert entry.torch_program is not None and entry.torch_program.path == "torch/tiny.pt2"
    net = load_checkpoint(trained_model.path).dynamic_net()
    x = torch.randn(32, *net.input_shape)
    with torch.no_grad(), net.use(entry.spec()):
        ref = net(x)
    runner = onnx_runner(out / entry.onnx.path)
    assert np.abs(runner.infer(x.numpy()) - ref.numpy()).max() <= 1e-4
    with torch.no_grad():
        assert (load_program(out / entry.torch_program.path)(x) - ref).abs().max().item() <= 1e-5


def test_mismatch_writes_nothing(trained_model, tmp_path):
    def corrupt(event: str, root: Path) -> None:
        if event == "weights":  # damage the shared weights after they were written
            data = bytearray((root / "subnets/weights.bin").read_bytes())
            data[64:4096] = bytes(len(data[64:4096]))
            (root / "subnets/weights.bin").write_bytes(bytes(data))

    out = tmp_path / "bad.slim"
    opts = ExportOptions(subnets=["tiny"], validation_samples=0)
    with pytest.raises(ValidationMismatchError, match="nothing was written"):
        export_artifact(trained_model.path, out, opts, hook=corrupt)
    assert not out.exists() and _leftovers(tmp_path, "bad.slim") == []


def test_interrupted_export_leaves_no_artifact(trained_model, tmp_path):
    def crash(event: str, root: Path) -> None:
        if event == "weights":
            assert (root / "subnets/weights.bin").is_file()
            raise KeyboardInterrupt

    out = tmp_path / "resnet20.slim"
    with pytest.raises(KeyboardInterrupt):
        export_artifact(trained_model.path, out, ExportOptions(validation_samples=0), hook=crash)
    assert not out.exists() and _leftovers(tmp_path, "resnet20.slim") == []


@pytest.mark.slow
def test_killed_export_leaves_only_a_hidden_temp_dir(trained_model, tmp_path):
    """kill -9 mid-export: only `.resnet20.slim.tmp-XXXX` remains, without a manifest, and no target."""
    out = tmp_path / "resnet20.slim"
    code = textwrap.dedent(f"""
        import os, signal
        from slimrt.exporters import ExportOptions, export_artifact
        def die(event, root):
            if event == "weights":
                os.kill(os.getpid(), signal.SIGKILL)
        export_artifact({str(trained_model.path)!r}, {str(out)!r}, ExportOptions(validation_samples=0), hook=die)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not out.exists()
    left = [n for n in _leftovers(tmp_path, "resnet20.slim") if not n.endswith(".lock")]  # its lock is a sibling
    assert len(left) == 1 and left[0].startswith(".resnet20.slim.tmp-")
    assert (tmp_path / left[0] / "subnets/weights.bin").is_file()
    assert not (tmp_path / left[0] / "manifest.json").exists()
    with pytest.raises(ArtifactError):
        load_manifest(tmp_path / left[0])


def test_existing_target_refused(exported_artifact, trained_model, tmp_path):
    out = tmp_path / "a.slim"
    shutil.copytree(exported_artifact[0], out)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_artifact(trained_model.path, out, ExportOptions(subnets=["tiny"]))
    assert (out / "manifest.json").read_bytes() == before
    # --force never replaces something that is not an artifact
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a slimrt artifact"):
        export_artifact(trained_model.path, other, ExportOptions(force=True))
    assert (other / "keep.txt").read_text() == "mine"


def test_unknown_subnet_name(trained_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown sub-net"):
        export_artifact(trained_model.path, tmp_path / "x.slim", ExportOptions(subnets=["nope"]))


@pytest.mark.parametrize("damage", ["flip", "missing", "tamper", "schema"])
def test_verify_catches_damage_naming_the_file(exported_artifact, tmp_path, damage):
    root = tmp_path / "art.slim"
    shutil.copytree(exported_artifact[0], root)
    if damage == "flip":
        p = root / "subnets/weights.bin"
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
        expect = "subnets/weights.bin"
    elif damage == "missing":
        os.remove(root / "subnets/tiny.onnx")
        expect = "subnets/tiny.onnx"
    elif damage == "tamper":  # a plausible edit: claim a better accuracy
        raw = json.loads((root / "manifest.json").read_text())
        raw["subnets"][-1]["test_accuracy"] = 99.9
        (root / "manifest.json").write_text(json.dumps(raw, indent=2) + "\n")
        expect = "manifest.json"
    else:  # a future format, written consistently (sidecar matches)
        raw = json.loads((root / "manifest.json").read_text())
        raw["schema_version"] = SCHEMA_VERSION + 1
        data = (json.dumps(raw, indent=2) + "\n").encode()
        (root / "manifest.json").write_bytes(data)
        (root / "manifest.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  manifest.json\n")
        expect = "schema version"
    with pytest.raises(ArtifactError, match=expect.replace(".", r"\.")):
        verify_artifact(root)
