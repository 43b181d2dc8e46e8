"""Testing helpers: build a real (tiny) slimrt artifact without torch, nested conv nets written with onnx.helper.

Public so that tests (``tests/conftest.py``), ``benchmarks/runtime.py`` (``synthetic: true``) and users testing their
own serving code can make an artifact in milliseconds, with no training and no torch.
Every sub-net of width ``c`` is: Conv(3->c, 3x3) + ReLU, ``depth - 1`` more Conv(c->c) + ReLU, global average
pool, MatMul(c->classes) + bias. The first conv's weight/bias and the classifier rows are prefixes of one shared
tensor set in ``subnets/weights.bin`` (contiguous: output-channel prefix / row prefix); deeper convs' slices are not
contiguous, so each sub-net's copy is appended to the same file. Wider sub-nets are slower (more MACs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import slimrt
from slimrt.artifact import write_manifest
from slimrt.schema import SCHEMA_VERSION, FileRef, Manifest, Producer, SubnetEntry, TensorSpec, sha256_file

__all__ = [
    "build_synthetic_artifact",
    "DEFAULT_WIDTHS",
    "load_subnet_weights",
    "reference_forward",
]

DEFAULT_WIDTHS = (64, 24, 8)
_ALIGN = 64


class _Weights:
    """Appends arrays to one external-data file and makes ONNX initializers pointing into it."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.buf = bytearray()
        self.offsets: dict[str, tuple[int, int]] = {}

    def add(self, key: str, arr: np.ndarray) -> None:
        pad = (-len(self.buf)) % _ALIGN
        self.buf += b"\0" * pad
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        self.offsets[key] = (len(self.buf), len(data))
        self.buf += data

    def tensor(self, name: str, key: str, shape: tuple[int, ...], byte_len: int | None = None) -> TensorProto:
        off, length = self.offsets[key]
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(shape)
        t.data_location = TensorProto.EXTERNAL
        length = length if byte_len is None else byte_len
        for k, v in (("location", self.location), ("offset", str(off)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t


def _subnet_model(
    c: int, depth: int, spatial: int, classes: int, batch: int | str, w: _Weights, opset: int
) -> tuple[onnx.ModelProto, int, int]:
    inits = [
        w.tensor("conv0.weight", "conv0.weight", (c, 3, 3, 3), c * 27 * 4),  # output-channel prefix
        w.tensor("conv0.bias", "conv0.bias", (c,), c * 4),
        w.tensor("fc.weight", "fc.weight", (c, classes), c * classes * 4),  # row prefix
        w.tensor("fc.bias", "fc.bias", (classes,)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv0.weight", "conv0.bias"], ["h0c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h0c"], ["h0"]),
    ]
    macs = c * 27 * spatial * spatial
    params = c * 27 + c
    prev = "h0"
    for i in range(1, depth):
        inits += [
            w.tensor(f"conv{i}.weight", f"conv{i}.weight/{c}", (c, c, 3, 3)),
            w.tensor(f"conv{i}.bias", f"conv{i}.bias", (c,), c * 4),
        ]
        nodes += [
            helper.make_node("Conv", [prev, f"conv{i}.weight", f"conv{i}.bias"], [f"h{i}c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"h{i}c"], [f"h{i}"]),
        ]
        prev = f"h{i}"
        macs += c * c * 9 * spatial * spatial
        params += c * c * 9 + c
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["mm"]),
        helper.make_node("Add", ["mm", "fc.bias"], ["logits"]),
    ]
    macs += c * classes
    params += c * classes + classes
    graph = helper.make_graph(
        nodes,
        f"synthetic_w{c}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, spatial, spatial])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="slimrt-synthetic")
    model.ir_version = 9
    return model, macs, params


def build_synthetic_artifact(
    root: str | Path,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    accuracies: tuple[float, ...] | None = None,
    test_accuracies: tuple[float, ...] | None = None,
    spatial: int = 16,
    depth: int = 2,
    classes: int = 10,
    dynamic_batch: bool = True,
    batch: int = 1,
    seed: int = 0,
    opset: int = 17,
) -> Path:
    """Write a complete artifact (manifest, sidecar, one ONNX per width, shared weights) to ``root``; return it."""
    root = Path(root)
    widths = tuple(sorted(widths, reverse=True))
    if accuracies is None:
        accuracies = tuple(90.0 - 10.0 * i for i in range(len(widths)))
    cmax = widths[0]
    rng = np.random.default_rng(seed)
    w = _Weights("weights.bin")
    w.add("conv0.weight", rng.normal(0, 0.3, (cmax, 3, 3, 3)))
    w.add("conv0.bias", rng.normal(0, 0.1, (cmax,)))
    w.add("fc.weight", rng.normal(0, 0.3, (cmax, classes)))
    w.add("fc.bias", rng.normal(0, 0.1, (classes,)))
    full = {i: (rng.normal(0, 0.2, (cmax, cmax, 3, 3)), rng.normal(0, 0.1, (cmax,))) for i in range(1, depth)}
    for i, (wt, b) in full.items():
        w.add(f"conv{i}.bias", b)
        for c in widths:
            w.add(f"conv{i}.weight/{c}", wt[:c, :c])
    sub_dir = root / "subnets"
    sub_dir.mkdir(parents=True, exist_ok=True)
    (sub_dir / "weights.bin").write_bytes(bytes(w.buf))
    bdim: int | str = "batch" if dynamic_batch else batch
    entries = []
    tests = test_accuracies if test_accuracies is not None else tuple(a - 0.5 for a in accuracies)
    for c, acc, test_acc in zip(widths, accuracies, tests, strict=True):
        model, macs, params = _subnet_model(c, depth, spatial, classes, bdim, w, opset)
        path = sub_dir / f"w{c}.onnx"
        onnx.save_model(model, str(path))
        entries.append(
            SubnetEntry(
                name=f"w{c}", widths={"stem": c}, macs=macs, params=params, val_accuracy=acc,
                test_accuracy=test_acc, max_abs_diff=0.0,
                onnx=FileRef(path=f"subnets/w{c}.onnx", sha256=sha256_file(path), bytes=path.stat().st_size),
            )
        )
    weights = sub_dir / "weights.bin"
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        producer=Producer(slimrt=slimrt.__version__, onnx=onnx.__version__),
        arch="synthetic-convnet",
        opset=opset,
        dynamic_batch=dynamic_batch,
        input=TensorSpec(
            name="input", shape=[bdim, 3, spatial, spatial], dtype="float32", layout="NCHW",
            mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
        ),
        output=TensorSpec(name="logits", shape=[bdim, classes], dtype="float32"),
        weights=FileRef(path="subnets/weights.bin", sha256=sha256_file(weights), bytes=weights.stat().st_size),
        subnets=entries,
    )
    write_manifest(root, manifest)
    return root


def load_subnet_weights(model_path: str | Path) -> dict[str, np.ndarray]:
    """Initializers of a synthetic sub-net (external data resolved) as numpy arrays."""
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)  # n,c,9,h,w
    out = np.einsum("nckhw,ock->nohw", cols, w.reshape(w.shape[0], c, 9), optimize=True)
    return out + b[None, :, None, None]


def reference_forward(model_path: str | Path, x: np.ndarray) -> np.ndarray:
    """Independent numpy implementation of a synthetic sub-net (float64), to check backends against."""
    p = {k: v.astype(np.float64) for k, v in load_subnet_weights(model_path).items()}
    h = x.astype(np.float64)
    i = 0
    while f"conv{i}.weight" in p:
        h = np.maximum(_conv3x3(h, p[f"conv{i}.weight"], p[f"conv{i}.bias"]), 0.0)
        i += 1
    return h.mean(axis=(2, 3)) @ p["fc.weight"] + p["fc.bias"]
