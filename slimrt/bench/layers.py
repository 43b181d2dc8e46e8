"""Latency tables: measure each part of a network over a grid of channel counts with the deployment backend.

A *part* is one kind of layer as it is exported: a conv followed by its BatchNorm and activation (ONNX Runtime
fuses them into one kernel), or a linear layer. Every part is built directly as a small ONNX model (random weights,
``onnx.helper``, no torch) at each ``(in, out)`` point of its grid and timed with
:func:`slimrt.runtime.measure.measure_latency`, interleaved with a trivial model on the same input so the per-call
overhead is measured in the same rounds and subtracted. The per-call cost of the whole network (``fixed_ms``) is
that trivial model on the network's input; when the full network's ONNX is given, what the parts do not explain at
full width (additions, pooling) becomes ``other_ms``. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from slimrt.schema import DeviceProfile, LatencyLayer, LatencyPart, LatencyTable

__all__ = ["PartShape", "part_model", "identity_model", "measure_latency_table", "unit_grid", "fit_alignment",
           "fit_stage_scales", "probe_layout_block", "plain_calibration_widths"]

log = logging.getLogger(__name__)
OPSET = 17


@dataclass(frozen=True)
class PartShape:
    """Shape signature of a part; layers with equal signatures share one measured part."""

    kind: str  # "conv" (also depthwise: groups == channels) or "linear"
    in_full: int
    out_full: int
    in_hw: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    depthwise: bool = False
    relu: bool = True
    in_grid: tuple[int, ...] = field(default=())
    out_grid: tuple[int, ...] = field(default=())
    name: str = ""  # overrides the key

    @property
    def key(self) -> str:
        if self.name:
            return self.name
        if self.kind == "linear":
            return f"linear-{self.in_full}x{self.out_full}"
        k, s, p, (h, w) = self.kernel, self.stride, self.padding, self.in_hw
        dw = "dw" if self.depthwise else ""
        return f"conv{dw}{k[0]}x{k[1]}s{s[0]}p{p[0]}-{self.in_full}x{self.out_full}@{h}x{w}"


def unit_grid(channels: int, unit: int) -> list[int]:
    """Grid of channel counts for a group: every multiple of ``unit`` up to ``channels`` (and ``channels``)."""
    pts = sorted({*range(unit, channels + 1, unit), channels})
    return [p for p in pts if p >= 1]


def _model(nodes: list, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "part", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def part_model(part: PartShape, n_in: int, n_out: int, batch: int, seed: int = 0) -> onnx.ModelProto:
    """ONNX model of ``part`` at ``n_in`` input and ``n_out`` output channels (conv + BN + ReLU, or Gemm)."""
    rng = np.random.default_rng(seed)
    if part.kind == "linear":
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, n_in])
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, n_out])
        w = numpy_helper.from_array(rng.standard_normal((n_out, n_in)).astype(np.float32) * 0.1, "w")
        b = numpy_helper.from_array(np.zeros(n_out, np.float32), "b")
        node = helper.make_node("Gemm", ["input", "w", "b"], ["output"], transB=1)
        return _model([node], [x], [y], [w, b])
    if part.depthwise:
        n_in = n_out
    h, wd = part.in_hw
    kh, kw = part.kernel
    groups = n_out if part.depthwise else 1
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, n_in, h, wd])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    w = rng.standard_normal((n_out, n_in // groups, kh, kw)).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(w, "w")]
    for name, val in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
        inits.append(numpy_helper.from_array(np.full(n_out, val, np.float32), name))
    conv = helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[kh, kw], strides=list(part.stride),
                            pads=[part.padding[0], part.padding[1], part.padding[0], part.padding[1]], group=groups)
    bn = helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"],
                          ["bn" if part.relu else "output"])  # fmt: skip
    nodes = [conv, bn] + ([helper.make_node("Relu", ["bn"], ["output"])] if part.relu else [])
    return _model(nodes, [x], [y], inits)


def identity_model(shape: Sequence[int]) -> onnx.ModelProto:
    """A trivial model (one Identity) on an input of ``shape``: the cost of a call itself."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    return _model([helper.make_node("Identity", ["input"], ["output"])], [x], [y], [])


def _runs_blocked(model: onnx.ModelProto, tmp: Path) -> bool:
    """Whether ONNX Runtime's CPU optimizer (all optimizations, as the runtime opens sessions) turns the model's
    convolution into a blocked-layout (NCHWc) one."""
    import onnxruntime as ort

    src, opt = tmp / "probe.onnx", tmp / "probe.opt.onnx"
    onnx.save(model, src)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(opt)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return any(n.domain == "com.microsoft.nchwc" and n.op_type == "Conv" for n in onnx.load(str(opt)).graph.node)


def probe_layout_block() -> int | None:
    """The smallest input channel count from which this device's ONNX Runtime leaves a convolution whose input count
    is not a multiple of 4 in the plain layout (its NCHWc block: 8 with AVX2, 16 with AVX-512); None when every
    such convolution runs blocked, or none does (no blocked layout, e.g. on ARM). Found from one-layer models,
    without timing (:func:`slimrt.schema.plain_layout` is the rule)."""
    part = PartShape("conv", 64, 16, in_hw=(8, 8), kernel=(3, 3), padding=(1, 1))
    with tempfile.TemporaryDirectory(prefix="slimrt-probe-") as d:
        tmp = Path(d)
        if not _runs_blocked(part_model(part, 16, 16, 1), tmp):
            return None  # not even an aligned convolution is blocked
        for block in (8, 16, 32):
            if not _runs_blocked(part_model(part, block + 2, 16, 1), tmp):
                return block
    return None


def plain_calibration_widths(groups: dict[str, int], block: int) -> dict[str, int] | None:
    """Every group at the widest count that makes the layers it feeds run plain (not a multiple of 4, at least
    ``block``): the whole network that calibrates ``plain_factor``; None when no group is wide enough."""
    out = {}
    for g, c in groups.items():
        w = next((n for n in range(c, block - 1, -1) if n % 4), None)
        out[g] = c if w is None else w
    return out if out != groups else None


def _runner(path: Path, threads: int | None):
    from slimrt.backends import create_runner
    from slimrt.backends.base import RunnerOptions

    return create_runner("onnxruntime", path, RunnerOptions(device="cpu", threads=threads)).load()


def _measure(models: dict[str, onnx.ModelProto], inputs: dict[str, np.ndarray], tmp: Path, threads: int | None,
             warmup: int, runs: int, duration_s: float | None) -> dict[str, float]:  # fmt: skip
    """p50 (ms) of every model, interleaved; models with different input shapes get one call wrapper each."""
    from slimrt.runtime.measure import measure_latency

    runners, fns = [], {}
    try:
        for name, m in models.items():
            p = tmp / f"{len(runners)}.onnx"
            onnx.save(m, p)
            r = _runner(p, threads)
            runners.append(r)
            x = inputs[name]
            fns[name] = (lambda _x, r=r, x=x: r.infer(x))
        lat = measure_latency(fns, np.zeros(1, np.float32), warmup=warmup, runs=runs, duration_s=duration_s)
    finally:
        for r in runners:
            r.close()
    return {k: v.p50_ms for k, v in lat.items()}


def measure_latency_table(
    parts: Sequence[PartShape],
    layers: Sequence[LatencyLayer],
    groups: dict[str, int],
    input_shape: Sequence[int],
    device_profile: DeviceProfile,
    *,
    full_model: onnx.ModelProto | None = None,
    small_model: onnx.ModelProto | None = None,
    small_widths: dict[str, int] | None = None,
    plain_model: onnx.ModelProto | None = None,
    plain_widths: dict[str, int] | None = None,
    layout_block: int | None | str = "probe",
    batch_size: int | None = None,
    threads: int | None = None,
    runs: int | None = None,
    warmup: int | None = None,
    duration_s: float | None = None,
    progress: bool = False,
) -> LatencyTable:
    """Measure every part over its grid (interleaved with a trivial model whose p50 is subtracted) and return the
    :class:`LatencyTable`.

    Args:
        parts: distinct part shapes with their grids (see :func:`slimrt.train.latency.layer_parts`).
        layers: the network's layers, each naming its part.
        groups: full channels of every group the layers use.
        input_shape: the network's input without the batch dimension.
        device_profile: threads, warm-up, runs and batch size come from it unless given.
        full_model: the full network's ONNX (input ``input``): measured to set ``other_ms``.
        small_model: the smallest sub-net's ONNX (``small_widths``): with ``full_model`` it calibrates ``scale``.
        plain_model: a sub-net whose convolutions run in the plain layout (``plain_widths``, see
            :func:`plain_calibration_widths`): with full and small, it calibrates ``plain_factor`` (:func:`calibrate`).
        layout_block: the device's NCHWc block (:func:`probe_layout_block`, which "probe" runs).
    """
    from slimrt.fingerprint import device_fingerprint

    prof = device_profile
    if prof.backend not in ("onnxruntime", "auto") or prof.device != "cpu":
        log.warning("latency tables are measured with ONNX Runtime on the CPU; device profile %s asks for %s/%s",
                    prof.name, prof.backend, prof.device)  # fmt: skip
    bs = batch_size or prof.batch_sizes[0]
    n_threads = threads if threads is not None else prof.threads
    n_runs = runs if runs is not None else prof.runs
    n_warm = warmup if warmup is not None else prof.warmup
    rng = np.random.default_rng(0)
    out_parts: list[LatencyPart] = []
    overheads: list[float] = []
    count = 0
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("latency table", total=len(parts) + 1)
    try:
        with tempfile.TemporaryDirectory(prefix="slimrt-lt-") as d:
            tmp = Path(d)
            net_in = np.asarray(rng.standard_normal((bs, *input_shape)), np.float32)
            ident = identity_model([bs, *input_shape])
            models = {"call": ident}
            inputs = {"call": net_in}
            for name, m in (("full", full_model), ("small", small_model), ("plain", plain_model)):
                if m is not None:
                    models[name] = m
                    inputs[name] = net_in
            base = _measure(models, inputs, tmp, n_threads, n_warm, n_runs, duration_s)
            count = len(models)
            fixed = base["call"]
            if bar is not None:
                bar.advance(task)
            for part in parts:
                models, inputs = {}, {}
                for i in part.in_grid:
                    for o in part.out_grid:
                        n_in = o if part.depthwise else i
                        shape = [bs, n_in] if part.kind == "linear" else [bs, n_in, *part.in_hw]
                        models[f"{i}x{o}"] = part_model(part, i, o, bs)
                        inputs[f"{i}x{o}"] = np.asarray(rng.standard_normal(shape), np.float32)
                shape = [bs, part.in_full] if part.kind == "linear" else [bs, part.in_full, *part.in_hw]
                models["call"] = identity_model(shape)
                inputs["call"] = np.asarray(rng.standard_normal(shape), np.float32)
                lat = _measure(models, inputs, tmp, n_threads, n_warm, n_runs, duration_s)
                over = lat["call"]
                overheads.append(over)
                count += len(models)
                ms = [[lat[f"{i}x{o}"] - over for o in part.out_grid] for i in part.in_grid]
                out_parts.append(LatencyPart(key=part.key, in_grid=list(part.in_grid), out_grid=list(part.out_grid),
                                             ms=ms))  # fmt: skip
                if bar is not None:
                    bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], n_threads, "fp32", bs)
    table = LatencyTable(
        device=prof.device, fingerprint=fp, batch_size=bs, created=datetime.now(timezone.utc).isoformat(),
        input_shape=list(input_shape), groups=dict(groups), fixed_ms=fixed, parts=out_parts, layers=list(layers),
        measurements=count, warmup=n_warm, runs=n_runs, load_avg=list(os.getloadavg()),
        layout_block=probe_layout_block() if isinstance(layout_block, str) else layout_block,
    )  # fmt: skip
    if full_model is not None:
        points = {"full": (dict(groups), base["full"])}
        if small_model is not None and small_widths is not None:
            points["small"] = (dict(small_widths), base["small"])
        if plain_model is not None and plain_widths is not None:
            points["plain"] = (dict(plain_widths), base["plain"])
        table = calibrate(table, points)
    log.info("latency table: %d parts, fixed %.4f ms, other %.4f ms", len(out_parts), table.fixed_ms, table.other_ms)
    return table


def calibrate(table: LatencyTable, points: dict[str, tuple[dict[str, int], float]]) -> LatencyTable:
    """``table`` calibrated on whole networks measured end to end: ``points`` maps "full" (required), "small" and
    "plain" to ``(widths, measured p50 ms)``. With full alone, ``other_ms`` takes the gap; with small too, ``scale``
    and ``other_ms`` make both exact; with a plain network too (see :func:`plain_calibration_widths`),
    ``plain_factor`` as well (three equations, three unknowns, whichever networks have plain layers). A
    calibration that comes out with a non-positive scale or factor (noise) falls back to the one before it, with a
    warning; the measured networks are recorded either way."""
    fixed = table.fixed_ms
    base = table.model_copy(update={"plain_factor": None, "scale": 1.0, "other_ms": 0.0, "align": None,
                                    "aligned_scale": None})  # fmt: skip
    rows = {k: (base.split3_ms(w, 0), m - fixed) for k, (w, m) in points.items()}
    (_, f_rest, f_plain), f_y = rows["full"]
    update: dict = {"full_measured_ms": points["full"][1], "other_ms": f_y - f_rest - f_plain, "scale": 1.0}
    if "small" in points:
        update |= {"small_measured_ms": points["small"][1], "small_widths": points["small"][0]}
        (_, s_rest, s_plain), s_y = rows["small"]
        span = (f_rest + f_plain) - (s_rest + s_plain)
        if span > 1e-9 and f_y > s_y:
            scale = (f_y - s_y) / span
            update |= {"scale": scale, "other_ms": f_y - scale * (f_rest + f_plain)}
        else:
            log.warning("latency table: the full network was not slower than the smallest sub-net (noise?); "
                        "scale left at 1")
    if "plain" in points:
        update |= {"plain_measured_ms": points["plain"][1], "plain_widths": points["plain"][0]}
        if "small" not in points or rows["plain"][0][2] <= 0:
            log.warning("latency table: plain_factor not calibrated (%s)", "no smallest sub-net to set the scale"
                        if "small" not in points else "the plain-layout network has no plain layer")  # fmt: skip
        else:
            x = np.array([[1.0, r[1], r[2]] for r, _ in (rows["full"], rows["small"], rows["plain"])])
            y = np.array([v for _, v in (rows["full"], rows["small"], rows["plain"])])
            sol = np.linalg.lstsq(x, y, rcond=None)[0] if np.linalg.matrix_rank(x) == 3 else None
            if sol is None or sol[1] <= 0 or sol[2] <= 0:
                log.warning("latency table: plain-layout calibration failed (noise, or networks that cannot separate "
                            "plain layers); plain_factor not set")  # fmt: skip
            else:
                update |= {"other_ms": float(sol[0]), "scale": float(sol[1]), "plain_factor": float(sol[2] / sol[1])}
                log.info("latency table: plain-layout layers (block %s) cost %.2fx their interpolated entries",
                         table.layout_block, sol[2] / sol[1])  # fmt: skip
    return table.model_copy(update=update)


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Least squares ``y ~ x @ c``; None unless every scale (the columns after the offset) comes out positive."""
    c = np.linalg.lstsq(x, y, rcond=None)[0]
    return c if np.all(c[1:] > 0) else None


def fit_alignment(table: LatencyTable, samples: Sequence[tuple[dict[str, int], float]],
                  aligns: Sequence[int] = (8, 16)) -> LatencyTable:  # fmt: skip
    """``table`` refitted on whole networks measured end to end: ``other_ms``, ``aligned_scale`` (layers whose input
    and output channel counts are both multiples of ``align``) and ``scale`` (the other layers) by least squares on
    ``samples`` (widths, measured p50 ms), for each candidate ``align``; the one with the lowest leave-one-out median
    error is kept (the SIMD block differs between CPUs: 8 floats with AVX2, 16 with AVX-512). When some of the
    networks have plain-layout layers (:meth:`LatencyTable.plain_layers`), those get a fourth column, fitted
    jointly, which sets ``plain_factor`` (their scale over the other layers'); otherwise the table's
    ``plain_factor`` is kept. ``fit`` records the number of networks and the in-sample and leave-one-out relative
    errors.

    Raises:
        ValueError: fewer than 6 samples, or no candidate separates the two scales with both positive (every
            network aligned, or none).
    """
    if len(samples) < 6:
        raise ValueError(f"fitting the alignment scales needs at least 6 measured networks, got {len(samples)}")
    measured = np.array([float(m) for _, m in samples])
    if not np.all(measured > 0):
        raise ValueError("measured latencies must be positive")
    y = measured - table.fixed_ms
    has_plain = any(table.plain_layers(w) for w, _ in samples)
    best: tuple[float, float, int, np.ndarray, np.ndarray] | None = None
    for a in aligns:
        if has_plain:
            x = np.array([[1.0, *table.split3_ms(w, a)] for w, _ in samples])
        else:
            x = np.array([[1.0, *table.split_ms(w, a)] for w, _ in samples])
        if np.linalg.matrix_rank(x) < x.shape[1]:
            continue
        coef = _fit(x, y)
        if coef is None:
            continue
        loo = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c = _fit(x[keep], y[keep])
            c = coef if c is None else c
            loo.append(abs((x[i] @ c + table.fixed_ms) / measured[i] - 1))
        med = float(np.median(loo))
        if best is None or med < best[0]:
            best = (med, float(np.max(loo)), a, coef, np.abs((x @ coef + table.fixed_ms) / measured - 1))
    if best is None:
        raise ValueError(f"the {len(samples)} networks cannot separate aligned from other layers for align in "
                         f"{list(aligns)} (need networks with and without unaligned layers, both scales > 0)")
    med, mx, a, coef, err = best
    fit = {"kind": "alignment", "networks": len(samples), "median_rel_error": float(np.median(err)),
           "max_rel_error": float(err.max()), "loo_median_rel_error": med,
           "loo_max_rel_error": mx, "aligns_tried": ",".join(map(str, aligns))}
    update = {"align": a, "other_ms": float(coef[0]), "aligned_scale": float(coef[1]), "scale": float(coef[2]),
              "fit": fit}  # fmt: skip
    if has_plain:
        update["plain_factor"] = float(coef[3] / coef[2])
    return table.model_copy(update=update)


def fit_stage_scales(table: LatencyTable, samples: Sequence[tuple[dict[str, int], float]], *,
                     loo: bool = True) -> LatencyTable:  # fmt: skip
    """``table`` refitted on whole networks measured end to end with one scale per resolution stage: least squares
    of ``measured - fixed_ms ~ other_ms + sum over stages of scale_stage x (the stage's layer entries)``
    (:meth:`LatencyTable.stage_ms`, plain-layout layers times the table's ``plain_factor``). The layers of one stage
    share their activations' size and layout conversions, which a layer timed alone does not see; the fit sets
    ``stage_scales`` (which :meth:`LatencyTable.predict_ms` then uses instead of ``scale`` / ``aligned_scale``,
    cleared here) and ``other_ms``. ``fit`` records the networks and the in-sample and (``loo``) leave-one-out
    relative errors, as :func:`fit_alignment` does.

    Raises:
        ValueError: the table has no spatial stage, fewer samples than the stages + 3, networks that cannot
            separate the stages (rank), or a fitted scale that is not positive.
    """
    stages = table.stages()
    if not stages:
        raise ValueError("the table has no layer with a spatial input: nothing to fit per stage")
    need = len(stages) + 3
    if len(samples) < need:
        raise ValueError(f"fitting {len(stages)} stage scales needs at least {need} measured networks, "
                         f"got {len(samples)}")  # fmt: skip
    measured = np.array([float(m) for _, m in samples])
    if not np.all(measured > 0):
        raise ValueError("measured latencies must be positive")
    base = table.model_copy(update={"stage_scales": None})
    x = np.array([[1.0, *(base.stage_ms(w)[st] for st in stages)] for w, _ in samples])
    y = measured - table.fixed_ms
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError(f"the {len(samples)} networks cannot separate the stages {stages} (rank-deficient)")
    coef = _fit(x, y)
    if coef is None:
        raise ValueError(f"a fitted stage scale is not positive on these {len(samples)} networks (noise?)")
    err = np.abs((x @ coef + table.fixed_ms) / measured - 1)
    fit: dict[str, float | int | str] = {"kind": "stages", "networks": len(samples),
                                         "median_rel_error": float(np.median(err)), "max_rel_error": float(err.max())}
    if loo:
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c = _fit(x[keep], y[keep])
            c = coef if c is None else c
            errs.append(abs((x[i] @ c + table.fixed_ms) / measured[i] - 1))
        fit |= {"loo_median_rel_error": float(np.median(errs)), "loo_max_rel_error": float(np.max(errs))}
    return table.model_copy(update={
        "stage_scales": dict(zip(stages, (float(c) for c in coef[1:]), strict=True)), "other_ms": float(coef[0]),
        "scale": 1.0, "align": None, "aligned_scale": None, "fit": fit})  # fmt: skip
