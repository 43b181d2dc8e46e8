"""Latency tables: the predictor on hand-made tables, layer parts of a DynamicNet, and one small real measurement
with ONNX Runtime (structure and positivity only, never timing values)."""

from __future__ import annotations

import pytest
import torch

from slimrt.bench import load_device_profile
from slimrt.errors import ConfigError
from slimrt.models import create_model
from slimrt.schema import DeviceFingerprint, LatencyLayer, LatencyPart, LatencyTable
from slimrt.train import DynamicNet
from slimrt.train.latency import LatencyPredictor, layer_parts, load_latency_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

FP = DeviceFingerprint(cpu_model="test", cpu_cores=1, backend="onnxruntime")


def table(parts: list[LatencyPart], layers: list[LatencyLayer], groups: dict[str, int], fixed: float = 0.5,
          other: float = 0.0, input_shape: tuple[int, ...] = (1, 8, 8)) -> LatencyTable:  # fmt: skip
    return LatencyTable(device="cpu", fingerprint=FP, created="now", input_shape=list(input_shape), groups=groups,
                        fixed_ms=fixed, other_ms=other, parts=parts, layers=layers)  # fmt: skip


def test_prediction_is_fixed_plus_sum_of_bilinear_parts():
    a = LatencyPart(key="a", in_grid=[4, 8], out_grid=[4, 8], ms=[[1.0, 2.0], [3.0, 5.0]])
    b = LatencyPart(key="b", in_grid=[8], out_grid=[10], ms=[[0.25]])
    layers = [
        LatencyLayer(name="conv", part="a", inputs=[("g1", 8)], outputs=[("g2", 8)]),
        LatencyLayer(name="fc", part="b", inputs=[("g2", 8)], outputs=[("out", 10)]),
    ]
    t = table([a, b], layers, {"g1": 8, "g2": 8, "out": 10}, fixed=0.5, other=0.125)
    assert t.predict_ms({}) == pytest.approx(0.5 + 0.125 + 5.0 + 0.25)
    assert t.predict_ms({"g1": 4, "g2": 4}) == pytest.approx(0.5 + 0.125 + 1.0 + 0.25)
    # Bilinear between grid points: (6, 6) is the mean of the four corners; (4, 6) the mean of 1 and 2.
    assert t.layer_ms({"g1": 6, "g2": 6})["conv"] == pytest.approx((1 + 2 + 3 + 5) / 4)
    assert t.layer_ms({"g1": 4, "g2": 6})["conv"] == pytest.approx(1.5)
    # A single-point grid is constant; the JSON round trip keeps the prediction.
    again = LatencyTable.model_validate_json(t.model_dump_json())
    assert again.predict_ms({"g1": 6}) == pytest.approx(t.predict_ms({"g1": 6}))


def test_table_validation_rejects_bad_shapes_and_unknown_parts():
    with pytest.raises(ValueError, match="2 x 2"):
        LatencyPart(key="a", in_grid=[4, 8], out_grid=[4, 8], ms=[[1.0, 2.0]])
    with pytest.raises(ValueError, match="increasing"):
        LatencyPart(key="a", in_grid=[8, 4], out_grid=[4], ms=[[1.0], [2.0]])
    a = LatencyPart(key="a", in_grid=[4], out_grid=[4], ms=[[1.0]])
    with pytest.raises(ValueError, match="unknown part"):
        table([a], [LatencyLayer(name="x", part="zz", inputs=[("g", 4)], outputs=[("g", 4)])], {"g": 4})


def _net(widths=(8, 8, 16), size: int = 16) -> DynamicNet:
    torch.manual_seed(0)
    return DynamicNet(create_model("resnet20", in_channels=1, num_classes=10, widths=widths),
                      torch.zeros(1, 1, size, size))  # fmt: skip


def test_layer_parts_cover_every_conv_and_linear_on_the_unit_grid():
    net = _net()
    parts, layers, groups = layer_parts(net, group_size=4, min_units=4)
    convs = [n for n, i in net._layers.items() if i.kind in ("conv", "linear")]
    assert [la.name for la in layers] == convs
    by_key = {p.key: p for p in parts}
    assert len(by_key) == len(parts) < len(layers)  # equal shapes share one part
    stem = by_key[next(la.part for la in layers if la.name == "conv1")]
    assert stem.in_grid == (1,) and stem.out_grid == (2, 4, 6, 8)  # 8 channels: units of 2
    deep = by_key[next(la.part for la in layers if la.name == "layer3.1.conv1")]
    assert deep.in_grid == deep.out_grid == (4, 8, 12, 16) and deep.in_hw == (4, 4)
    assert all(groups[g] == net.group(g).channels for g in groups)


def test_predictor_checks_the_table_matches_the_network(tmp_path):
    net = _net()
    a = LatencyPart(key="a", in_grid=[4], out_grid=[4], ms=[[1.0]])
    bad = table([a], [LatencyLayer(name="conv1", part="a", inputs=[("input", 1)], outputs=[("conv1", 99)])],
                {"input": 1, "conv1": 99}, input_shape=net.input_shape)  # fmt: skip
    with pytest.raises(ConfigError, match="channels"):
        LatencyPredictor(net, bad)
    with pytest.raises(ConfigError, match="input size"):
        LatencyPredictor(net, bad.model_copy(update={"input_shape": [1, 8, 8]}))
    with pytest.raises(ConfigError, match="not found"):
        load_latency_table(tmp_path / "missing.json")


def test_real_measurement_on_a_tiny_net_has_the_right_structure(tmp_path):
    pytest.importorskip("onnxruntime")
    from slimrt.cli.latency_table import measure_net_table

    net = _net((4, 4, 8), size=8)
    prof = load_device_profile("cpu")
    t = measure_net_table(net, prof, group_size=2, min_units=2, threads=1, runs=3, warmup=1)
    parts, layers, groups = layer_parts(net, group_size=2, min_units=2)
    assert [p.key for p in t.parts] == [p.key for p in parts]
    for p, shape in zip(t.parts, parts, strict=True):
        assert p.in_grid == list(shape.in_grid) and p.out_grid == list(shape.out_grid)
        assert len(p.ms) == len(p.in_grid) and all(len(r) == len(p.out_grid) for r in p.ms)
    assert t.fixed_ms > 0 and t.full_measured_ms is not None and t.full_measured_ms > 0
    assert t.groups == groups and t.runs == 3 and t.measurements > len(parts)
    assert t.fingerprint.backend == "onnxruntime" and t.fingerprint.threads == 1
    assert t.predict_ms({}) == pytest.approx(t.full_measured_ms)  # other_ms closes the gap at full width
    path = tmp_path / "t.json"
    path.write_text(t.model_dump_json())
    pred = LatencyPredictor(net, load_latency_table(path))
    assert pred.ms(net.full_spec()) > 0


def test_real_measurement_calibrates_the_plain_layout_factor_on_a_network_of_plain_layers():
    pytest.importorskip("onnxruntime")
    from slimrt.bench.layers import probe_layout_block
    from slimrt.cli.latency_table import measure_net_table

    block = probe_layout_block()
    if block is None:
        pytest.skip("this ONNX Runtime has no blocked layout on this CPU")
    net = _net((12, 24, 24), size=8)
    t = measure_net_table(net, load_device_profile("cpu"), group_size=4, min_units=2, threads=1, runs=20, warmup=2)
    assert t.layout_block == block and t.plain_widths is not None and t.plain_measured_ms is not None
    assert t.plain_widths["layer3.0.downsample.0"] == 23 and t.plain_layers(t.plain_widths)  # 23 runs plain
    # The factor makes the table predict the calibration network as measured (a noisy round leaves it unset).
    if t.plain_factor is not None:
        assert t.predict_ms(t.plain_widths) == pytest.approx(t.plain_measured_ms, rel=1e-6)
    assert t.predict_ms({}) == pytest.approx(t.full_measured_ms)  # nothing plain at full width


def _grid_table() -> LatencyTable:
    g = [4, 8, 12, 16]
    a = LatencyPart(key="a", in_grid=g, out_grid=g, ms=[[0.01 * i * o / 16 + 0.02 for o in g] for i in g])
    layers = [LatencyLayer(name="c1", part="a", inputs=[("g1", 16)], outputs=[("g2", 16)]),
              LatencyLayer(name="c2", part="a", inputs=[("g2", 16)], outputs=[("g3", 16)])]  # fmt: skip
    return table([a], layers, {"g1": 16, "g2": 16, "g3": 16}, fixed=0.05)


def test_alignment_scales_split_layers_by_channel_multiple():
    t = _grid_table().model_copy(update={"align": 8, "aligned_scale": 0.5, "scale": 2.0, "other_ms": 0.1})
    w = {"g1": 8, "g2": 16, "g3": 12}  # c1 is 8 -> 16 (aligned), c2 is 16 -> 12 (not)
    ms = t.layer_ms(w)
    assert t.split_ms(w) == pytest.approx((ms["c1"], ms["c2"]))
    assert t.split_ms(w, align=4) == pytest.approx((ms["c1"] + ms["c2"], 0.0))
    assert t.predict_ms(w) == pytest.approx(0.05 + 0.1 + 0.5 * ms["c1"] + 2.0 * ms["c2"])
    again = LatencyTable.model_validate_json(t.model_dump_json())
    assert again.predict_ms(w) == pytest.approx(t.predict_ms(w))
    plain = t.model_copy(update={"aligned_scale": None})  # without a fitted aligned scale: one scale for all
    assert plain.predict_ms(w) == pytest.approx(0.05 + 0.1 + 2.0 * (ms["c1"] + ms["c2"]))


def test_stage_scales_scale_each_resolution_stage_and_are_validated():
    from slimrt.schema import part_stage

    a = LatencyPart(key="conv3x3s1p1-8x8@16x16-g4x4", in_grid=[4, 8], out_grid=[4, 8], ms=[[1.0, 2.0], [3.0, 5.0]])
    b = LatencyPart(key="conv3x3s2p1-8x8@8x8-g4x4", in_grid=[4, 8], out_grid=[4, 8], ms=[[0.5, 1.0], [1.5, 2.5]])
    c = LatencyPart(key="linear-8x10-g4x1", in_grid=[8], out_grid=[10], ms=[[0.25]])
    layers = [LatencyLayer(name="c1", part=a.key, inputs=[("g1", 8)], outputs=[("g2", 8)]),
              LatencyLayer(name="c2", part=b.key, inputs=[("g2", 8)], outputs=[("g3", 8)]),
              LatencyLayer(name="fc", part=c.key, inputs=[("g3", 8)], outputs=[("out", 10)])]  # fmt: skip
    t = table([a, b, c], layers, {"g1": 8, "g2": 8, "g3": 8, "out": 10}, fixed=0.5, other=0.125)
    assert t.stages() == ["16x16", "8x8"] and part_stage(c.key) is None and part_stage("conv@axb-g1") is None
    assert t.stage_ms({}) == {"16x16": 5.0, "8x8": 2.5 + 0.25}  # the linear layer counts with the smallest stage
    staged = t.model_copy(update={"stage_scales": {"16x16": 0.5, "8x8": 2.0}})
    assert staged.predict_ms({}) == pytest.approx(0.5 + 0.125 + 0.5 * 5.0 + 2.0 * 2.75)
    assert staged.predict_ms({"g1": 4, "g2": 4, "g3": 4}) == pytest.approx(0.5 + 0.125 + 0.5 * 1.0 + 2.0 * 0.75)
    again = LatencyTable.model_validate_json(staged.model_dump_json())
    assert again.predict_ms({"g2": 4}) == pytest.approx(staged.predict_ms({"g2": 4}))
    with pytest.raises(ValueError, match="must name the stages"):
        LatencyTable.model_validate({**t.model_dump(), "stage_scales": {"16x16": 1.0}})
    with pytest.raises(ValueError, match="positive"):
        LatencyTable.model_validate({**t.model_dump(), "stage_scales": {"16x16": 1.0, "8x8": -1.0}})


def test_fit_alignment_recovers_the_scales_of_whole_networks():
    from slimrt.bench.layers import fit_alignment

    t = _grid_table()
    truth = t.model_copy(update={"align": 8, "aligned_scale": 0.7, "scale": 1.3, "other_ms": 0.02})
    nets = [{"g1": a, "g2": b, "g3": c} for a in (4, 8, 16) for b in (4, 8, 12, 16) for c in (8, 12)]
    samples = [(w, truth.predict_ms(w)) for w in nets]
    fitted = fit_alignment(t, samples, aligns=(8, 16))
    assert fitted.align == 8  # 16 explains these networks worse, leave-one-out
    assert (fitted.other_ms, fitted.aligned_scale, fitted.scale) == pytest.approx((0.02, 0.7, 1.3), rel=1e-6)
    assert fitted.fit["networks"] == len(nets) and fitted.fit["loo_max_rel_error"] < 1e-6
    assert fitted.fixed_ms == t.fixed_ms and fitted.parts == t.parts  # only the scales change
    with pytest.raises(ValueError, match="at least 6"):
        fit_alignment(t, samples[:5])
    aligned_only = [(w, truth.predict_ms(w)) for w in ({"g1": a, "g2": b, "g3": 8} for a in (8, 16) for b in (8, 16))]
    with pytest.raises(ValueError, match="cannot separate"):  # no unaligned layer anywhere: one scale is unknowable
        fit_alignment(t, aligned_only * 2, aligns=(8,))


def _conv_table(block: int | None = 8, factor: float | None = None) -> LatencyTable:
    g = [4, 8, 12, 16]
    a = LatencyPart(key="conv3x3-a", in_grid=g, out_grid=g, ms=[[0.01 * i * o / 16 + 0.02 for o in g] for i in g])
    fc = LatencyPart(key="linear-16x10", in_grid=g, out_grid=[10], ms=[[0.01]] * 4)
    layers = [LatencyLayer(name="c1", part="conv3x3-a", inputs=[("g1", 16)], outputs=[("g2", 16)]),
              LatencyLayer(name="c2", part="conv3x3-a", inputs=[("g2", 16)], outputs=[("g3", 16)]),
              LatencyLayer(name="fc", part="linear-16x10", inputs=[("g3", 16)], outputs=[("out", 10)])]  # fmt: skip
    t = table([a, fc], layers, {"g1": 16, "g2": 16, "g3": 16, "out": 10}, fixed=0.05, other=0.01)
    return t.model_copy(update={"layout_block": block, "plain_factor": factor, "scale": 0.8})


def test_plain_layout_layers_are_the_unaligned_inputs_from_the_block_up():
    from slimrt.schema import plain_layout

    # A convolution runs plain from the block up when its input count is not a multiple of 4; linear layers never.
    t = _conv_table(block=8)
    assert t.plain_layers({"g1": 16, "g2": 16, "g3": 15}) == []  # fc's 15 inputs: a Gemm has no layout
    assert t.plain_layers({"g1": 6, "g2": 13, "g3": 16}) == ["c2"]  # c1: 6 inputs, below the block
    assert t.plain_layers({"g1": 9, "g2": 12, "g3": 16}) == ["c1"]
    assert _conv_table(block=16).plain_layers({"g1": 9, "g2": 13, "g3": 16}) == []
    assert _conv_table(block=None).plain_layers({"g1": 9, "g2": 13, "g3": 16}) == []
    assert [n for n in range(1, 13) if plain_layout(n, n, True, 8)] == [2, 3, 5, 6, 7, 9, 10, 11]  # depthwise
    # plain_factor multiplies exactly those layers' entries; without it they keep the interpolated entry.
    w = {"g1": 16, "g2": 14, "g3": 16}
    ms = t.layer_ms(w)
    assert t.predict_ms(w) == pytest.approx(0.05 + 0.01 + 0.8 * (ms["c1"] + ms["c2"] + ms["fc"]))
    f = _conv_table(block=8, factor=2.5)
    assert f.predict_ms(w) == pytest.approx(0.05 + 0.01 + 0.8 * (ms["c1"] + 2.5 * ms["c2"] + ms["fc"]))
    assert f.predict_ms({}) == pytest.approx(t.predict_ms({}))  # nothing plain at full width
    aligned = f.model_copy(update={"align": 8, "aligned_scale": 0.5})  # with the alignment refit: "other" layers
    assert aligned.predict_ms(w) == pytest.approx(0.05 + 0.01 + 0.8 * (ms["c1"] + 2.5 * ms["c2"] + ms["fc"]))
    full = t.layer_ms({})
    assert aligned.predict_ms({}) == pytest.approx(0.05 + 0.01 + 0.5 * (full["c1"] + full["c2"]) + 0.8 * full["fc"])
    assert LatencyTable.model_validate_json(f.model_dump_json()).predict_ms(w) == pytest.approx(f.predict_ms(w))


def test_calibration_recovers_scale_offset_and_plain_factor_from_three_networks():
    from slimrt.bench.layers import calibrate, plain_calibration_widths

    widths = plain_calibration_widths({"g1": 16, "g2": 16, "g3": 16, "small": 6, "x": 8}, 8)
    assert widths == {"g1": 15, "g2": 15, "g3": 15, "small": 6, "x": 8}  # below or at the block: left alone
    assert plain_calibration_widths({"a": 8, "b": 4}, 8) is None  # nothing can run plain
    truth = _conv_table(block=8, factor=1.7).model_copy(update={"scale": 0.8, "other_ms": 0.01})
    small = {"g1": 4, "g2": 4, "g3": 4}
    plain = {"g1": 15, "g2": 15, "g3": 15}

    def points(t, *nets):
        return {name: (w, t.predict_ms(w)) for name, w in zip(("full", "small", "plain"), nets, strict=False)}

    fresh = _conv_table(block=8).model_copy(update={"scale": 1.0, "other_ms": 0.0})
    got = calibrate(fresh, points(truth, {}, small, plain))
    assert (got.other_ms, got.scale, got.plain_factor) == pytest.approx((0.01, 0.8, 1.7))
    assert got.plain_widths == plain and got.plain_measured_ms == pytest.approx(truth.predict_ms(plain))
    two = calibrate(fresh, points(truth, {}, small))  # without the plain network: no factor, the same scale
    assert two.plain_factor is None and two.scale == pytest.approx(0.8)
    # A network whose full width already has plain layers (g2 at 14): the three equations still separate them.
    wide = {"g1": 16, "g2": 14, "g3": 16}
    truth14 = truth.model_copy(update={"groups": {**truth.groups, **wide}})
    got14 = calibrate(fresh.model_copy(update={"groups": truth14.groups}),
                      points(truth14, wide, small, {"g1": 15, "g2": 13, "g3": 15}))  # fmt: skip
    assert (got14.other_ms, got14.scale, got14.plain_factor) == pytest.approx((0.01, 0.8, 1.7))
    assert got14.predict_ms(wide) == pytest.approx(got14.full_measured_ms)
    # Noise: a plain network measured faster than its blocked layers alone would be leaves the factor unset.
    noisy = calibrate(fresh, {**points(truth, {}, small), "plain": (plain, 0.06)})
    assert noisy.plain_factor is None and noisy.plain_measured_ms == 0.06 and noisy.scale == pytest.approx(0.8)


def test_fit_alignment_refits_the_plain_factor_jointly():
    from slimrt.bench.layers import fit_alignment

    truth = _conv_table(block=8, factor=2.0).model_copy(update={"align": 8, "aligned_scale": 0.5, "scale": 1.0,
                                                                "other_ms": 0.02})  # fmt: skip
    nets = [{"g1": a, "g2": b, "g3": c} for a in (8, 13, 16) for b in (8, 11, 12, 16) for c in (8, 15)]
    samples = [(w, truth.predict_ms(w)) for w in nets]
    stale = _conv_table(block=8, factor=4.03)  # a factor from an earlier calibration must not leak into the fit
    fitted = fit_alignment(stale, samples, aligns=(8,))
    assert (fitted.other_ms, fitted.aligned_scale, fitted.scale, fitted.plain_factor) == pytest.approx(
        (0.02, 0.5, 1.0, 2.0), rel=1e-6)  # fmt: skip
    assert fitted.fit["loo_max_rel_error"] < 1e-6


def _ort_plain_convs(net: DynamicNet, widths: dict[str, int], tmp_path) -> int:
    """Convolutions ONNX Runtime's optimizer (all optimizations) leaves outside the blocked NCHWc layout."""
    import onnx
    import onnxruntime as ort

    from slimrt.exporters.onnx import export_module

    src, opt = tmp_path / "n.onnx", tmp_path / "n.opt.onnx"
    onnx.save(export_module(net.extract(net.spec(widths, name="n")), torch.zeros(1, *net.input_shape)), src)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(opt)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(opt)).graph.node
    return sum(1 for n in nodes if n.op_type in ("Conv", "FusedConv") and n.domain != "com.microsoft.nchwc")


def test_plain_layout_rule_matches_onnx_runtimes_optimized_graphs(tmp_path):
    pytest.importorskip("onnxruntime")
    from slimrt.bench.layers import probe_layout_block

    block = probe_layout_block()
    if block is None:
        pytest.skip("this ONNX Runtime has no blocked layout on this CPU")
    net = _net((16, 32, 64), size=8)
    parts, layers, groups = layer_parts(net, group_size=8, min_units=4)
    t = table([LatencyPart(key=p.key, in_grid=list(p.in_grid), out_grid=list(p.out_grid),
                           ms=[[0.0] * len(p.out_grid) for _ in p.in_grid]) for p in parts],
              layers, groups, input_shape=net.input_shape).model_copy(update={"layout_block": block})  # fmt: skip
    nets = [net.uniform_spec(52 / 64, "u").widths]  # 13 / 26 / 52 channels
    nets += [{g.name: min(c, g.channels) for g in net.prunable_groups} for c in (block + 2, 12)]  # all at c
    nets.append({**net.full_spec().widths, "layer1.0.conv1": 12, "layer2.1.conv1": 22, "layer3.2.conv1": 41})
    counts = [(len(t.plain_layers(w)), _ort_plain_convs(net, w, tmp_path)) for w in nets]
    assert [p for p, _ in counts] == [o for _, o in counts]
    assert len({o for _, o in counts}) == 4  # the set exercises the rule (none, a few, most plain)


def _two_stage_table() -> LatencyTable:
    g = [4, 8, 12, 16, 24, 32]
    ms = [[0.001 * i * o + 0.01 for o in g] for i in g]
    parts = [LatencyPart(key="conv3x3s1p1-16x32@16x16-g4x4", in_grid=g, out_grid=g, ms=ms),
             LatencyPart(key="conv3x3s2p1-32x32@8x8-g4x4", in_grid=g, out_grid=g, ms=ms),
             LatencyPart(key="linear-32x10-g4x1", in_grid=g, out_grid=[10], ms=[[0.001] for _ in g])]
    layers = [LatencyLayer(name="c1", part=parts[0].key, inputs=[("g1", 16)], outputs=[("g2", 32)]),
              LatencyLayer(name="c2", part=parts[1].key, inputs=[("g2", 32)], outputs=[("g3", 32)]),
              LatencyLayer(name="fc", part=parts[2].key, inputs=[("g3", 32)], outputs=[("out", 10)])]  # fmt: skip
    return table(parts, layers, {"g1": 16, "g2": 32, "g3": 32, "out": 10}, fixed=0.05)


_NETS = [{"g1": a, "g2": b, "g3": c} for a in (4, 8, 12, 16) for b in (8, 12, 32) for c in (12, 32)]


def test_fit_stage_scales_recovers_one_scale_per_stage_and_refuses_what_it_cannot_fit():
    from slimrt.bench.layers import fit_stage_scales

    t = _two_stage_table()
    truth = t.model_copy(update={"stage_scales": {"16x16": 0.5, "8x8": 1.2}, "other_ms": 0.02})
    samples = [(w, truth.predict_ms(w)) for w in _NETS]
    fitted = fit_stage_scales(t.model_copy(update={"align": 8, "aligned_scale": 0.7, "scale": 1.3}), samples)
    assert fitted.stage_scales == {"16x16": pytest.approx(0.5), "8x8": pytest.approx(1.2)}
    assert fitted.other_ms == pytest.approx(0.02) and fitted.align is None and fitted.aligned_scale is None
    assert fitted.fit["kind"] == "stages" and fitted.fit["networks"] == len(_NETS)
    assert fitted.fit["loo_max_rel_error"] < 1e-9 and fitted.parts == t.parts
    assert all(fitted.predict_ms(w) == pytest.approx(truth.predict_ms(w)) for w in _NETS + [{"g1": 4}])
    again = LatencyTable.model_validate_json(fitted.model_dump_json())  # the schema accepts what the fit writes
    assert again.predict_ms({"g2": 12}) == pytest.approx(truth.predict_ms({"g2": 12}))
    with pytest.raises(ValueError, match="at least 5"):
        fit_stage_scales(t, samples[:4])
    with pytest.raises(ValueError, match="not positive"):  # the first stage faster the wider it is: no such device
        fit_stage_scales(t, [(w, 1.0 - 0.5 * t.stage_ms(w)["16x16"]) for w in _NETS])
    with pytest.raises(ValueError, match="cannot separate"):  # every network the same: one equation
        fit_stage_scales(t, [samples[0]] * 6)
    with pytest.raises(ValueError, match="no layer with a spatial input"):
        fit_stage_scales(_grid_table(), samples)


def test_refit_best_keeps_whichever_fit_predicts_the_networks_better(caplog):
    from slimrt.cli.latency_table import refit

    t = _two_stage_table()
    by_stage = t.model_copy(update={"stage_scales": {"16x16": 0.5, "8x8": 1.2}, "other_ms": 0.02})
    by_align = t.model_copy(update={"align": 8, "aligned_scale": 0.6, "scale": 1.4, "other_ms": 0.02})
    for truth, kind in ((by_stage, "stages"), (by_align, "alignment")):
        samples = [(w, truth.predict_ms(w)) for w in _NETS]
        best = refit(t, samples, "best")
        assert best.fit["kind"] == kind, best.fit
        other = "alignment" if kind == "stages" else "stages"
        assert best.fit["chosen_over"].startswith(other + ":")
        assert all(best.predict_ms(w) == pytest.approx(truth.predict_ms(w)) for w in _NETS)
        assert refit(t, samples, "align").fit["kind"] == "alignment"
        assert refit(t, samples, "stages").fit["kind"] == "stages"
    # a fit that fails is a warning and the table comes back as it was
    bad = [(w, 1.0 - 0.5 * t.stage_ms(w)["16x16"]) for w in _NETS]
    assert refit(t, bad, "stages") == t and "stage-scale fit on 24 networks failed" in caplog.text
    with pytest.raises(ValueError, match="unknown fit"):
        refit(t, bad, "magic")
