"""Progressive search with ``cost = "latency"`` on hand-written latency tables (pure logic, no timing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from slimrt.models import create_model
from slimrt.schema import DeviceFingerprint, LatencyPart, LatencyTable
from slimrt.train import DynamicNet, load_checkpoint
from slimrt.train.config import SearchConfig
from slimrt.train.data import load_dataset
from slimrt.train.latency import LatencyPredictor, layer_parts
from slimrt.train.loops import fixed_sampler, train_epochs
from slimrt.train.methods.progressive import (
    group_units,
    latency_step_target,
    next_candidate,
    per_ms,
    progressive_search,
)
from slimrt.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

FP = DeviceFingerprint(cpu_model="test", cpu_cores=1, backend="onnxruntime")
EXPENSIVE = "layer3.1.conv1"  # the group between layer3.1.conv1 and layer3.1.conv2


def _net(seed: int = 0) -> DynamicNet:
    torch.manual_seed(seed)
    return DynamicNet(create_model("resnet20", in_channels=1, num_classes=10, widths=(8, 8, 16)),
                      torch.zeros(1, 1, 16, 16))  # fmt: skip


def synthetic_table(net: DynamicNet, per_layer: dict[str, Callable[[int, int], float]] | None = None,
                    default: float = 1e-3, fixed: float = 0.1) -> LatencyTable:  # fmt: skip
    """One part per layer on the unit grid: ``ms = default * n_in * n_out``, or ``per_layer[name](n_in, n_out)``."""
    shapes, layers, groups = layer_parts(net, group_size=4, min_units=4)
    by_key = {p.key: p for p in shapes}
    parts, out = [], []
    for la in layers:
        shape = by_key[la.part]
        fn = (per_layer or {}).get(la.name, lambda i, o: default * i * o)
        parts.append(LatencyPart(key=la.name, in_grid=list(shape.in_grid), out_grid=list(shape.out_grid),
                                 ms=[[fn(i, o) for o in shape.out_grid] for i in shape.in_grid]))  # fmt: skip
        out.append(la.model_copy(update={"part": la.name}))
    return LatencyTable(device="cpu", fingerprint=FP, created="now", input_shape=list(net.input_shape),
                        groups=groups, fixed_ms=fixed, parts=parts, layers=out)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", val_size=200, limit_train=512, seed=0)


@pytest.fixture(scope="module")
def trained(data):
    net = _net(1)
    cfg = SearchConfig.build({"batch_size": 64, "lr": 0.1, "augment": False})
    train_epochs(net, data, fixed_sampler([net.full_spec()]), 3, cfg)
    return net.eval()


def test_config_needs_a_table_and_matching_targets():
    with pytest.raises(ValueError, match="latency_table"):
        SearchConfig.build({"cost": "latency"})
    with pytest.raises(ValueError, match="latency_targets"):
        SearchConfig.build({"cost": "latency", "latency_table": "t.json", "subnets": 2, "latency_targets": [1.0]})
    with pytest.raises(ValueError, match="latency targets need latency_table"):
        SearchConfig.build({"subnets": 1, "latency_targets": [0.5]})
    with pytest.raises(ValueError, match="not both"):
        SearchConfig.build({"subnets": 1, "latency_table": "t", "latency_targets": [0.5], "macs_targets": [0.5]})
    with pytest.raises(ValueError, match="method 'progressive'"):
        SearchConfig.build({"method": "usnet", "subnets": 1, "latency_table": "t", "latency_targets": [0.5]})
    assert SearchConfig.build({}).cost == "macs"
    assert SearchConfig.build({"subnets": 1, "latency_table": "t", "latency_targets": [0.5]}).cost == "macs"


def test_per_ms_prefers_cutting_what_saves_most_time():
    scores = torch.tensor([1.0, 1.0, 2.0])
    saved = torch.tensor([1.0, 10.0, 1.0])
    imp = per_ms(scores, saved)
    assert imp.argmin() == 1 and imp[2] > imp[0]  # equal scores: the 10x-saving unit goes first; order kept


def test_expensive_group_is_cut_first():
    net = _net()
    # Only the group between layer3.1.conv1 and conv2 is expensive: conv1's cost follows its outputs, conv2's its
    # inputs (the residual stream they also touch stays cheap).
    t = synthetic_table(net, {"layer3.1.conv1": lambda i, o: 1.0 * o, "layer3.1.conv2": lambda i, o: 1.0 * i})
    pred = LatencyPredictor(net, t)
    full = net.full_spec("c00")
    units = group_units(net, full, group_size=4)
    scores = torch.ones(len(units), dtype=torch.float64)  # every unit equally important
    cfg = SearchConfig.build({"cost": "latency", "latency_table": "x", "latency_step": 0.05, "group_size": 4})
    saved = pred.unit_ms(full, units)
    target = latency_step_target(pred.full_ms, pred.full_ms, cfg)
    new, removed = next_candidate(net, full, units, per_ms(scores, saved), target_macs=target, name="c01", cfg=cfg,
                                  cost=pred.ms)  # fmt: skip
    assert removed >= 1 and new.widths[EXPENSIVE] < net.group(EXPENSIVE).channels
    assert all(w == net.group(g).channels for g, w in new.widths.items() if g != EXPENSIVE)
    assert pred.ms(new) <= target
    # With MACs as the cost the same scores cut elsewhere first (the expensive group is not expensive in MACs).
    macs_new, _ = next_candidate(net, full, units, scores, target_macs=0.95 * full.macs, name="m01",
                                 cfg=SearchConfig.build({"group_size": 4}))  # fmt: skip
    assert macs_new.widths[EXPENSIVE] == net.group(EXPENSIVE).channels


def test_latency_search_steps_remove_about_equal_predicted_ms(trained, data, tmp_path):
    net = _net(0)
    net.model.load_state_dict(trained.model.state_dict())
    t = synthetic_table(net)
    path = tmp_path / "table.json"
    path.write_text(t.model_dump_json())
    cfg = SearchConfig.build({
        "cost": "latency", "latency_table": str(path), "latency_step": 0.15, "min_latency": 0.4, "max_cut": 1.0,
        "ranking": "l1", "group_size": 4, "subnets": 3, "epochs": 0, "finetune_steps": 0, "calib_batches": 2,
        "batch_size": 64, "augment": False,
    })  # fmt: skip
    final, report = progressive_search(net, data, cfg)
    pred = LatencyPredictor(net, t)
    full = pred.full_ms
    ms = [c.predicted_latency_ms for c in report.candidates]
    assert ms[0] == pytest.approx(full) and report.cost == "latency"
    drops = [a - b for a, b in zip(ms, ms[1:], strict=False)]
    assert len(drops) >= 3
    step = 0.15 * full
    for c, d in zip(report.candidates, drops[:-1], strict=False):  # each step reaches its target ...
        biggest_unit = float(pred.unit_ms(c.spec, group_units(net, c.spec, group_size=4)).max())
        assert step - 1e-9 <= d < step + biggest_unit, (d, step, biggest_unit)  # ... overshooting by < one unit
    assert ms[-1] >= 0.4 * full * 0.9
    assert len(final) == 3 and set(report.predicted_latency_ms) == {s.name for s in final}
    assert [report.predicted_latency_ms[s.name] for s in final] == sorted(report.predicted_latency_ms.values(),
                                                                          reverse=True)  # fmt: skip


def test_latency_targets_in_ms(trained, data, tmp_path):
    """Targets in milliseconds: the search goes down to the smallest (below min_latency) and picks near each."""
    from slimrt.cli.train import _latency_targets
    from slimrt.errors import ConfigError

    assert _latency_targets("0.9ms, 0.5MS") == (None, [0.9, 0.5]) and _latency_targets("1,0.5") == ([1.0, 0.5], None)
    with pytest.raises(ConfigError, match="all in one unit"):
        _latency_targets("0.9ms,0.5")
    with pytest.raises(ValueError, match="not both"):
        SearchConfig.build({"cost": "latency", "latency_table": "t", "subnets": 1, "latency_targets": [1.0],
                            "latency_targets_ms": [1.0]})  # fmt: skip
    with pytest.raises(ValueError, match="positive milliseconds"):
        SearchConfig.build({"cost": "latency", "latency_table": "t", "subnets": 1, "latency_targets_ms": [-1.0]})
    net = _net(0)
    net.model.load_state_dict(trained.model.state_dict())
    t = synthetic_table(net)
    path = tmp_path / "table.json"
    path.write_text(t.model_dump_json())
    full = LatencyPredictor(net, t).full_ms
    base = {"cost": "latency", "latency_table": str(path), "latency_step": 0.1, "min_latency": 0.7, "max_cut": 1.0,
            "ranking": "l1", "group_size": 4, "subnets": 3, "epochs": 0, "finetune_steps": 0, "calib_batches": 2,
            "batch_size": 64, "augment": False}  # fmt: skip
    with pytest.raises(ConfigError, match="above the full network's predicted"):
        progressive_search(net, data, SearchConfig.build({**base, "latency_targets_ms": [2 * full, full, 0.5]}))
    targets = [full, 0.75 * full, 0.45 * full]
    final, report = progressive_search(net, data, SearchConfig.build({**base, "latency_targets_ms": targets}))
    got = sorted(report.predicted_latency_ms.values(), reverse=True)
    assert min(c.predicted_latency_ms for c in report.candidates) < 0.7 * full  # went below min_latency
    # the smallest pick sits within one search step of the smallest target (re-selection keeps only candidates on
    # the accuracy/latency Pareto front, so the others are near, not at, their targets)
    assert len(got) == 3 and abs(got[-1] - targets[-1]) <= 0.1 * full + 1e-9, (targets, got)
    assert got[1] < 0.95 * full


@pytest.mark.parametrize("search", [{"cost": "latency"}, {"cost": "macs", "latency_targets": [1.0, 0.6]}],
                         ids=["cost-latency", "macs-placed-by-latency"])
def test_latency_table_lands_in_checkpoint_and_manifest(tmp_path, search):
    pytest.importorskip("onnxruntime")
    from slimrt.exporters.artifact_writer import ExportOptions, export_artifact
    from slimrt.schema import Manifest

    tiny = {
        "arch": "resnet20", "arch_kwargs": {"widths": [8, 8, 16]}, "dataset": "synthetic", "limit_train": 256,
        "val_size": 200, "batch_size": 64, "pretrain_epochs": 1, "epochs": 0, "augment": False, "subnets": 2,
        "group_size": 4, "ranking": "l1", "finetune_steps": 0, "calib_batches": 2, "seed": 0,
        "latency_step": 0.3, "min_latency": 0.5, "max_cut": 1.0,
    }  # fmt: skip
    cfg0 = SearchConfig.build({**tiny, "out": str(tmp_path / "probe.pt")})
    from slimrt.train.data import load_dataset as load
    from slimrt.train.trainer import build_net

    net = build_net(cfg0, load("synthetic", val_size=200, limit_train=256, seed=0))
    t = synthetic_table(net)
    (tmp_path / "t.json").write_text(t.model_dump_json())
    cfg = SearchConfig.build({**tiny, **search, "latency_table": str(tmp_path / "t.json"),
                              "out": str(tmp_path / "m.pt")})  # fmt: skip
    run_training(cfg)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert LatencyTable.model_validate(ckpt.extra["latency_table"]) == t
    export_artifact(tmp_path / "m.pt", tmp_path / "art", ExportOptions())
    manifest = Manifest.model_validate_json((tmp_path / "art" / "manifest.json").read_text())
    assert manifest.latency_table == t
    assert all(s.predicted_latency_ms is not None and s.predicted_latency_ms > 0 for s in manifest.subnets)
    from slimrt.bench import load_device_profile, run_bench

    result = run_bench(tmp_path / "art", load_device_profile("cpu"), runs=5, threads=1, save=False, progress=False)
    for row, s in zip(result.subnets, manifest.subnets, strict=True):  # bench reports predicted vs measured
        assert row.predicted_latency_ms == s.predicted_latency_ms and row.predicted_error is not None


def test_final_subnets_stay_nested_when_predicted_latency_is_not_monotonic(trained, data, tmp_path):
    """A measured table is noisy and not monotonic in width (on a CPU 32 channels can run faster than 33): along the
    search chain the predicted latency may rise again. The final sub-nets must still come out nested, largest first."""
    net = _net(0)
    net.model.load_state_dict(trained.model.state_dict())

    def bumpy(i: int, o: int) -> float:  # fast on multiples of 8 channels, slow in between, like the CPU's kernels
        return 1e-3 * i * o * (0.2 if o % 8 == 0 else 3.0)

    t = synthetic_table(net, per_layer={la.name: bumpy for la in layer_parts(net, group_size=4, min_units=4)[1]})
    path = tmp_path / "table.json"
    path.write_text(t.model_dump_json())
    pred = LatencyPredictor(net, t)
    cfg = SearchConfig.build({
        "cost": "latency", "latency_table": str(path), "latency_step": 0.1, "min_latency": 0.1, "max_cut": 1.0,
        "ranking": "l1", "group_size": 4, "subnets": 4, "latency_targets": [1.0, 0.8, 0.6, 0.4], "epochs": 0,
        "finetune_steps": 0, "calib_batches": 2, "batch_size": 64, "augment": False,
    })  # fmt: skip
    final, report = progressive_search(net, data, cfg)
    ms = [pred.ms(c.spec) for c in report.candidates]
    assert any(b > a for a, b in zip(ms, ms[1:], strict=False)), ms  # the chain's predicted latency does rise
    assert len(final) == 4
    for a, b in zip(final, final[1:], strict=False):
        assert b.nested_in(a) and b.macs < a.macs, (a.name, b.name)


def test_macs_cost_places_the_final_subnets_at_latency_targets(trained, data, tmp_path):
    """Cost MACs with latency targets: the chain is the MACs search's own (same ranking, same MACs steps), it goes on
    past min_macs until the smallest target's predicted latency, and the picks are made by predicted latency."""
    net0 = _net(0)
    net0.model.load_state_dict(trained.model.state_dict())
    t = synthetic_table(net0, fixed=1.0)  # a large fixed cost: latency falls slower than MACs
    path = tmp_path / "table.json"
    path.write_text(t.model_dump_json())
    base = {"ranking": "l1", "group_size": 4, "subnets": 3, "epochs": 0, "finetune_steps": 0, "calib_batches": 2,
            "batch_size": 64, "augment": False, "macs_step": 0.15, "min_macs": 0.5}  # fmt: skip
    _, plain = progressive_search(net0, data, SearchConfig.build(base))
    assert plain.predicted_latency_ms == {} and all(c.predicted_latency_ms is None for c in plain.candidates)

    net = _net(0)
    net.model.load_state_dict(trained.model.state_dict())
    pred = LatencyPredictor(net, t)
    targets = [1.0, 0.8, 0.6]
    final, report = progressive_search(net, data, SearchConfig.build({**base, "latency_table": str(path),
                                                                      "latency_targets": targets}))  # fmt: skip
    assert report.cost == "macs" and report.full_predicted_ms == pytest.approx(pred.full_ms)
    # the same chain as without targets while it overlaps: MACs ranking and MACs steps are unchanged
    n = len(plain.candidates)
    assert [c.spec.widths for c in report.candidates[:n]] == [c.spec.widths for c in plain.candidates]
    fracs = [pred.ms(c.spec) / pred.full_ms for c in report.candidates]
    assert fracs[n - 1] > 0.6 and len(report.candidates) > n  # min_macs alone stopped short of the target ...
    assert min(c.spec.macs for c in report.candidates) < 0.5 * net.macs()  # ... so it went past min_macs
    assert fracs[-1] <= 0.6 + 1e-9 and all(f > 0.6 for f in fracs[:-1])  # and stopped at the smallest target
    # each pick: the most accurate candidate whose predicted latency fits its target
    accs = [c.final_val_accuracy for c in report.candidates]
    by_name = {c.spec.name: i for i, c in enumerate(report.candidates)}
    for name, target in zip(report.selected, targets, strict=True):
        i = by_name[name]
        fits = [j for j, f in enumerate(fracs) if f <= target * (1 + 1e-9)]
        assert i in fits and accs[i] == max(accs[j] for j in fits), (name, target)
    assert len(final) == 3 and set(report.predicted_latency_ms) == {s.name for s in final}
    for a, b in zip(final, final[1:], strict=False):
        assert b.nested_in(a) and b.macs < a.macs
