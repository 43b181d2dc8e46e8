"""The standard accuracy benchmark's matching rules (benchmarks/accuracy_aggregate.py) on hand-written rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_aggregate import (  # noqa: E402
    arch_key,
    baseline_note,
    compare_families,
    compare_seed,
    markdown,
    matched_latency,
    matched_macs,
    read_runs,
    summarize,
)


def _row(name, c, macs, acc):
    return {"name": name, "widths": {"g0": c, "g1": 2 * c}, "macs": macs, "test_accuracy": acc}


GRID = [_row("w4", 4, 400, 90.0), _row("w3", 3, 300, 89.0), _row("w2", 2, 200, 87.0), _row("w1", 1, 100, 80.0)]
LAT = {arch_key(g["widths"]): {"b1_p50": 0.1 * g["widths"]["g0"] + 0.2} for g in GRID}  # 0.6 0.5 0.4 0.3 ms


def test_matched_latency_takes_most_accurate_width_not_slower():
    grid = [{**g, **LAT[arch_key(g["widths"])]} for g in GRID]
    assert matched_latency(0.55, grid)["name"] == "w3"
    assert matched_latency(0.5, grid)["name"] == "w3"  # equal latency counts as not larger
    assert matched_latency(0.29, grid) is None  # every width is slower
    # a slower width that is less accurate never wins over a faster, more accurate one
    odd = [*grid, {**_row("x", 9, 250, 95.0), "b1_p50": 0.35}]
    assert matched_latency(0.45, odd)["name"] == "x"


def test_matched_macs_is_nearest():
    assert matched_macs(260, GRID)["name"] == "w3"
    assert matched_macs(250, GRID)["name"] == "w2"  # tie: the smaller
    assert matched_macs(10_000, GRID)["name"] == "w4"


def test_compare_and_summarize_over_seeds():
    prog_widths = [{"g0": 5, "g1": 3}, {"g0": 6, "g1": 1}]
    lat = {**LAT, arch_key(prog_widths[0]): {"b1_p50": 0.52}, arch_key(prog_widths[1]): {"b1_p50": 0.31}}
    usnet = {"grid": GRID}
    seeds = {}
    for seed, bump in ((0, 0.0), (1, 1.0)):
        prog = {"subnets": [{"name": "m90", "widths": prog_widths[0], "macs": 390, "test_accuracy": 89.5 + bump},
                            {"name": "m20", "widths": prog_widths[1], "macs": 120, "test_accuracy": 85.0 + bump}]}
        seeds[seed] = compare_seed(prog, usnet, lat)
    first = seeds[0]
    assert first[0]["usnet_at_latency"]["name"] == "w3" and first[0]["gap_at_latency"] == pytest.approx(0.5)
    assert first[0]["usnet_at_macs"]["name"] == "w4" and first[0]["gap_at_macs"] == pytest.approx(-0.5)
    assert first[1]["usnet_at_latency"]["name"] == "w1" and first[1]["gap_at_latency"] == pytest.approx(5.0)
    assert [r["smaller_half"] for r in first] == [False, True]
    s = summarize(seeds)
    top, small = s["per_rank"]
    assert top["progressive"]["n"] == 2 and top["progressive"]["mean"] == pytest.approx(90.0)
    assert top["progressive"]["sd"] == pytest.approx(0.7071, abs=1e-4)
    assert small["gap_at_latency"]["mean"] == pytest.approx(5.5)
    g = s["goals"]
    assert g["mean_gap_at_latency_smaller_half"] == pytest.approx(5.5) and g["goal_plus1_smaller_half"]
    assert g["min_gap_at_latency"] == pytest.approx(1.0) and g["goal_never_below_minus_0.3"]
    assert not g["goal_read_over_3_seeds"]
    # without independent runs: no twin columns, no twin goal
    assert first[0]["twin"] is None and first[0]["uniform_at_macs"] is None
    assert g["goal_within_0.5_of_twin"] is None and "twin" not in markdown(s)
    assert len(markdown(s).splitlines()[0].split("|")) - 2 == 9 and len(markdown(s).splitlines()) == 4


PROG_WIDTHS = [{"g0": 5, "g1": 3}, {"g0": 6, "g1": 1}]


def _prog(bump=0.0):
    return {"subnets": [{"name": "m90", "widths": PROG_WIDTHS[0], "macs": 390, "test_accuracy": 89.5 + bump},
                        {"name": "m20", "widths": PROG_WIDTHS[1], "macs": 120, "test_accuracy": 85.0 + bump}]}


def test_twins_and_uniform_independent_columns():
    lat = {**LAT, arch_key(PROG_WIDTHS[0]): {"b1_p50": 0.52}, arch_key(PROG_WIDTHS[1]): {"b1_p50": 0.31}}
    # twins listed in another order than the progressive sub-nets: matched by widths, not by position
    twins = {"subnets": [{"name": "m20", "widths": PROG_WIDTHS[1], "macs": 120, "test_accuracy": 85.8},
                         {"name": "m90", "widths": PROG_WIDTHS[0], "macs": 390, "test_accuracy": 89.0}]}
    uniform = {"subnets": [_row("w4", 4, 400, 89.9), _row("w1", 1, 100, 84.0)]}
    seeds = {0: compare_seed(_prog(), {"grid": GRID}, lat, twins, uniform),
             1: compare_seed(_prog(1.0), {"grid": GRID}, lat)}  # seed 1 has no independent runs
    big, small = seeds[0]
    assert big["twin"]["name"] == "m90" and big["gap_to_twin"] == pytest.approx(0.5)
    assert small["twin"]["b1_p50"] == 0.31 and small["gap_to_twin"] == pytest.approx(-0.8)
    assert big["uniform_at_macs"]["name"] == "w4" and big["gap_to_uniform_at_macs"] == pytest.approx(-0.4)
    assert small["uniform_at_macs"]["name"] == "w1" and small["gap_to_uniform_at_macs"] == pytest.approx(1.0)
    assert seeds[1][0]["twin"] is None and seeds[1][0]["gap_to_uniform_at_macs"] is None
    s = summarize(seeds)
    top, low = s["per_rank"]
    assert top["progressive"]["n"] == 2 and top["gap_to_twin"]["n"] == 1  # the twin columns: only seed 0
    assert top["twin"]["mean"] == pytest.approx(89.0) and low["gap_to_twin"]["mean"] == pytest.approx(-0.8)
    assert low["uniform_at_macs"]["mean"] == pytest.approx(84.0)
    g = s["goals"]
    assert g["min_gap_to_twin"] == pytest.approx(-0.8) and g["goal_within_0.5_of_twin"] is False
    assert g["twin_seeds"] == 1
    md = markdown(s).splitlines()
    assert "twin % (n)" in md[0] and "gap to uniform indep." in md[0]
    assert len(md[0].split("|")) == len(md[2].split("|"))  # every row has every column
    assert "89.00 ± 0.00 (1)" in md[2] and "-0.80 ± 0.00" in md[3]


def test_read_runs_skips_the_pretrained_record(tmp_path):
    (tmp_path / "pretrained-seed0.json").write_text(json.dumps({"seed": 0, "test_accuracy": 93.5}))
    for method, seed in (("progressive", 0), ("independent-uniform", 0), ("progressive", 2)):
        (tmp_path / f"{method}-seed{seed}.json").write_text(json.dumps({"method": method, "seed": seed}))
    runs = read_runs(tmp_path)
    assert {m: sorted(s) for m, s in runs.items()} == {"progressive": [0, 2], "independent-uniform": [0]}


def test_families_compare_each_searched_variant_with_usnet_of_its_seeds():
    lat = {**LAT, arch_key(PROG_WIDTHS[0]): {"b1_p50": 0.52}, arch_key(PROG_WIDTHS[1]): {"b1_p50": 0.31}}
    twins = {"subnets": [{**r, "test_accuracy": r["test_accuracy"] + 1} for r in _prog()["subnets"]]}
    runs = {"usnet": {0: {"grid": GRID}, 1: {"grid": GRID}}, "progressive": {0: _prog(), 2: _prog()},
            "progressive-latency": {0: _prog(0.5), 1: _prog(1.0)}, "independent": {0: twins}}
    fams = compare_families(runs, lat)
    assert list(fams) == ["progressive", "progressive-latency"]
    assert list(fams["progressive"]["per_seed"]) == [0]  # seed 2 has no US-Nets run
    assert list(fams["progressive-latency"]["per_seed"]) == [0, 1]
    # the twins belong to the progressive family only
    assert fams["progressive"]["per_seed"][0][0]["gap_to_twin"] == pytest.approx(-1.0)
    assert fams["progressive-latency"]["per_seed"][0][0]["twin"] is None
    g = fams["progressive-latency"]["goals"]
    assert g["b1_p50_span"]["mean"] == pytest.approx(0.52 / 0.31) and g["goal_span_2.5x"] is False
    # smallest sub-net: m20 at 0.31 ms vs w1 (80.0%) -> +5.5 and +6.0 over the two seeds
    assert g["gap_at_latency_smallest"] == pytest.approx(5.75) and g["goal_smallest_plus1"]
    assert compare_families({"usnet": {0: {"grid": GRID}}}, lat) == {}


def _report(cost, accs, selected, finetunes=1):
    """A progressive search report of a 7-candidate chain (costs fall 100, 90, ..., 40)."""
    cands = [{"spec": {"name": f"c{i:02d}", "macs": 100 - 10 * i}, "predicted_latency_ms": 1.0 - 0.1 * i,
              "final_val_accuracy": a} for i, a in enumerate(accs)]  # fmt: skip
    return {"cost": cost, "ranking": "noise", "supernet_epochs": 2 if cost == "latency" else 0, "candidates": cands,
            "selected": selected, "finetunes": finetunes}  # fmt: skip


def test_search_mechanics_reports_what_threshold_and_reselection_did():
    from accuracy_aggregate import search_mechanics

    # evenly spaced picks of 3 from 7: c00, c03, c06. c03 (88) is dominated by the cheaper, more accurate c04 (89).
    run = {"report": _report("macs", [92, 91, 90, 88, 89, 85, 80], ["c00", "c04", "c06"], finetunes=4),
           "budget": {"spent_fraction": 0.95}}  # fmt: skip
    m = search_mechanics(run)
    assert m["even"] == ["c00", "c03", "c06"] and m["picked"] == ["c00", "c04", "c06"]
    assert (m["picks_differ"], m["even_picks_dominated"], m["steps"], m["finetunes"]) == (1, 1, 6, 4)
    assert m["budget_spent"] == 0.95 and m["cost"] == "macs"
    # re-selection that keeps the even picks changes nothing
    same = search_mechanics({"report": _report("latency", [92, 91, 90, 88, 89, 85, 80], ["c06", "c00", "c03"])})
    assert (same["picks_differ"], same["even_picks_dominated"], same["budget_spent"]) == (0, 0, None)


def test_placement_names_how_the_final_subnets_were_picked():
    from accuracy_aggregate import placed_by_latency, placement

    accs, picks = [92, 91, 90, 88, 89, 85, 80], ["c00", "c04", "c06"]
    macs = {"report": _report("macs", accs, picks), "config": {"min_macs": 0.1}}
    assert placement(macs) == "spread over MACs, to 10%" and not placed_by_latency(macs)
    lat = {"report": _report("latency", accs, picks), "config": {"min_latency": 0.45}}
    assert placement(lat) == "spread over predicted latency, to 45%" and placed_by_latency(lat)
    # MACs cost whose final sub-nets were placed at latency targets: judged on predicted latency
    lt = {"report": _report("macs", accs, picks), "config": {"latency_targets": [1.0, 0.6, 0.42]}}
    assert placement(lt) == "predicted latency 100/60/42%" and placed_by_latency(lt)
    assert placement({"report": _report("macs", accs, picks), "config": {"macs_targets": [1.0, 0.5]}}) == "MACs 100/50%"


def test_ablation_rows_one_per_family_with_its_factors():
    from accuracy_aggregate import ablation, ablation_markdown

    lat = {**LAT, arch_key(PROG_WIDTHS[0]): {"b1_p50": 0.52}, arch_key(PROG_WIDTHS[1]): {"b1_p50": 0.31}}
    accs, picks = [92, 91, 90, 88, 89, 85, 80], ["c00", "c04", "c06"]
    runs = {"usnet": {0: {"grid": GRID}, 1: {"grid": GRID}},
            "progressive": {0: {**_prog(), "report": _report("macs", accs, picks, 3)}},
            "progressive-latency": {s: {**_prog(0.5 * s), "report": _report("latency", accs, picks, 2)}
                                    for s in (0, 1)}}  # fmt: skip
    fams = compare_families(runs, lat)
    rows = ablation(runs, fams)
    assert [r["family"] for r in rows] == ["progressive", "progressive-latency"]
    lat_row = rows[1]
    assert (lat_row["seeds"], lat_row["cost"], lat_row["supernet_epochs"]) == (2, "latency", 2)
    assert (lat_row["finetunes"], lat_row["steps"], lat_row["picks_differ"], lat_row["picks"]) == (4, 12, 2, 6)
    assert lat_row["gap_at_latency_smallest"] == fams["progressive-latency"]["goals"]["gap_at_latency_smallest"]
    table = ablation_markdown(rows)
    assert table.count("\n") == 3 and "| progressive-latency | 2 | latency | 2 | noise | spread over predicted" in table


def test_latency_windows_add_up_as_medians_on_the_same_machine(tmp_path):
    from accuracy_aggregate import combine_windows, previous_windows

    mach = {"cpu": "AMD EPYC", "cores": 2}
    a, b = arch_key({"g0": 1}), arch_key({"g0": 2})
    path = tmp_path / "aggregate.json"
    assert previous_windows(path, mach) == []
    # an aggregate from before windows were kept: its one latency table is one window
    path.write_text(json.dumps({"machine": mach, "finished": "t0",
                                "latency": {a: {"widths": {"g0": 1}, "b1_p50": 1.0, "b1_runs": 200}}}))  # fmt: skip
    old = previous_windows(path, mach)
    assert old == [{"finished": "t0", "latency": {a: {"b1_p50": 1.0, "b1_runs": 200}}}]
    windows = [*old, {"latency": {a: {"b1_p50": 1.3}, b: {"b1_p50": 0.5}}}, {"latency": {a: {"b1_p50": 1.2}}}]
    lat = combine_windows(windows)
    assert lat[a] == {"b1_p50": pytest.approx(1.2), "windows": 3}  # the median, runs counts dropped
    # b was measured only in the window where a (measured in every window) ran 1.3 / 1.2 of its median: scaled back
    assert lat[b] == {"b1_p50": pytest.approx(0.5 * 1.2 / 1.3), "windows": 1}
    path.write_text(json.dumps({"machine": mach, "latency_windows": windows}))
    assert len(previous_windows(path, mach)) == 3
    assert previous_windows(path, {"cpu": "Intel Xeon", "cores": 2}) == []  # another machine: a new series
    path.write_text("{truncated")
    assert previous_windows(path, mach) == []


def test_windows_are_scaled_to_a_common_speed_before_the_median():
    """A window where the machine ran slower (plain-layout networks: small ones 1.4x, large ones 1.2x; blocked ones
    1.1x) measured new architectures: read at the common speed each is as fast as the reference architectures of its
    kind and latency it ran beside; fields scale separately; without a reference architecture nothing is scaled."""
    from accuracy_aggregate import combine_windows, layout_kind, speed_at, window_speeds

    plain = {arch_key({"g0": 4 * c + 1}): 0.1 * c for c in [*range(1, 11), *range(15, 25)]}  # measured every window
    blocked = {arch_key({"g0": 4 * c}): 0.1 * c for c in range(1, 11)}
    assert {layout_kind(k) for k in plain} == {"plain"} and {layout_kind(k) for k in blocked} == {"blocked"}
    quiet = {"latency": {k: {"b1_p50": ms, "b32_p50": 10 * ms} for k, ms in {**plain, **blocked}.items()}}
    slow = {**{k: {"b1_p50": ms * (1.4 if ms < 1.2 else 1.2), "b32_p50": 10 * ms} for k, ms in plain.items()},
            **{k: {"b1_p50": ms * 1.1, "b32_p50": 10 * ms} for k, ms in blocked.items()}}  # fmt: skip
    small, large, aligned = arch_key({"g0": 401}), arch_key({"g0": 403}), arch_key({"g0": 400})
    windows = [quiet, {"latency": {**slow, small: {"b1_p50": 0.42, "b32_p50": 3.0}, large: {"b1_p50": 2.7},
                                   aligned: {"b1_p50": 0.55}}}, quiet]  # fmt: skip
    speeds = window_speeds(windows)
    assert [len(s["plain"]["b1_p50"]) for s in speeds] == [4, 4, 4]  # 20 references: four knots of 5
    assert speed_at(speeds[1]["plain"]["b1_p50"], 0.3) == pytest.approx(1.4)
    assert speed_at(speeds[1]["plain"]["b1_p50"], 3.0) == pytest.approx(1.2)
    assert speed_at(speeds[1]["blocked"]["b1_p50"], 0.5) == pytest.approx(1.1)
    assert speed_at(speeds[0]["plain"]["b1_p50"], 0.5) == pytest.approx(1.0)
    lat = combine_windows(windows)
    assert lat[small]["b1_p50"] == pytest.approx(0.3) and lat[large]["b1_p50"] == pytest.approx(2.25)
    assert lat[aligned]["b1_p50"] == pytest.approx(0.5)  # by the blocked curve (the plain one would read 0.39)
    assert lat[small]["b32_p50"] == pytest.approx(3.0)  # b32 ran at the common speed in that window
    assert all(lat[k]["b1_p50"] == pytest.approx(ms) for k, ms in {**plain, **blocked}.items())
    # no architecture in every window: nothing to scale by
    a, b = arch_key({"g0": 1}), arch_key({"g0": 2})
    disjoint = [{"latency": {a: {"b1_p50": 1.0}}}, {"latency": {b: {"b1_p50": 3.0}}}]
    assert window_speeds(disjoint) == [{"plain": {}}, {"plain": {}}]
    assert combine_windows(disjoint)[b]["b1_p50"] == 3.0


def test_scaling_check_reads_architectures_from_the_last_windows_only():
    """The last window ran every plain-layout network 1.5x slower: read from it alone, each reference architecture is
    scaled back to its median (the others ran beside it), unscaled it is 50% off."""
    from accuracy_aggregate import scaling_check

    refs = {arch_key({"g0": 4 * c + 1}): 0.1 * c for c in range(1, 13)}
    quiet = {"latency": {k: {"b1_p50": ms} for k, ms in refs.items()}}
    windows = [quiet, quiet, {"latency": {k: {"b1_p50": 1.5 * ms} for k, ms in refs.items()}}]
    check = scaling_check(windows, last=1)
    assert check["windows_read"] == [3, 3] and list(check["kinds"]) == ["plain"]
    plain = check["kinds"]["plain"]
    assert plain["n"] == 12 and plain["scaled"]["max"] == pytest.approx(0.0, abs=1e-9)
    assert plain["unscaled"]["median"] == pytest.approx(0.5)
    assert scaling_check(windows[:1], last=1) is None


def test_predictor_check_compares_the_table_with_measured_latency_per_family(tmp_path):
    torch = pytest.importorskip("torch")
    from accuracy_aggregate import predictor_check, predictor_markdown

    from slimrt.models import create_model
    from slimrt.schema import DeviceFingerprint, LatencyPart, LatencyTable
    from slimrt.train import DynamicNet
    from slimrt.train.latency import LatencyPredictor, layer_parts

    kw = {"in_channels": 1, "num_classes": 10, "widths": (8, 8, 16)}
    net = DynamicNet(create_model("resnet20", **kw), torch.zeros(1, 1, 16, 16))
    shapes, layers, groups = layer_parts(net, group_size=4, min_units=4)
    by_key = {p.key: p for p in shapes}
    parts = [LatencyPart(key=la.name, in_grid=list(by_key[la.part].in_grid), out_grid=list(by_key[la.part].out_grid),
                         ms=[[1e-3 * i * o for o in by_key[la.part].out_grid] for i in by_key[la.part].in_grid])
             for la in layers]  # fmt: skip
    table = LatencyTable(device="cpu", fingerprint=DeviceFingerprint(cpu_model="t", cpu_cores=1, backend="onnxruntime"),
                         created="now", input_shape=[1, 16, 16], groups=groups, fixed_ms=0.1, parts=parts,
                         layers=[la.model_copy(update={"part": la.name}) for la in layers])  # fmt: skip
    path = tmp_path / "latency-table-cpu.json"
    path.write_text(table.model_dump_json())
    full = net.full_spec().widths
    half = {g: max(4, c // 2) for g, c in full.items()}  # 4 and 8 channels: on the 4-channel unit grid
    odd = {g: c - 1 for g, c in full.items()}  # 7 and 15 channels: off it
    pred = LatencyPredictor(net, table)
    runs = {"progressive": {0: {"subnets": [{"name": "m100", "widths": full}, {"name": "m25", "widths": half}]}},
            "usnet": {0: {"subnets": [{"name": "w16", "widths": full}],
                          "grid": [{"name": "w16", "widths": full}, {"name": "w15", "widths": odd}]}}}  # fmt: skip
    lat = {arch_key(full): {"b1_p50": 1.1 * pred.full_ms}, arch_key(half): {"b1_p50": pred.ms(net.spec(half))},
           arch_key(odd): {"b1_p50": 0.5 * pred.ms(net.spec(odd))}}  # fmt: skip
    check = predictor_check(path, runs, lat, "resnet20", kw, (1, 16, 16))
    fams = check["families"]
    assert set(fams) == {"progressive", "usnet grid, on the unit grid", "usnet grid, off the unit grid"}
    assert fams["progressive"]["n"] == 2 and fams["progressive"]["max_abs_error"] == pytest.approx(0.1)
    assert fams["progressive"]["median_abs_error"] == pytest.approx(0.05)
    assert fams["usnet grid, off the unit grid"]["rows"][0]["error"] == pytest.approx(-0.5)
    # Relative to the full network (measured 10% above its prediction), m25 is 1/1.1 of what full's ratio implies.
    assert fams["progressive"]["max_error_relative_to_full"] == pytest.approx(1 - 1 / 1.1)
    assert fams["usnet grid, off the unit grid"]["rows"][0]["error_relative_to_full"] == pytest.approx(0.5 / 1.1 - 1)
    assert check["full_predicted_ms"] == pytest.approx(pred.full_ms)
    assert "| progressive | 2 | 5.0% | 10.0% | 4.5% | 9.1% |" in predictor_markdown(check)
    assert predictor_check(tmp_path / "missing.json", runs, lat, "resnet20", kw, (1, 16, 16)) is None
    # Random probes: one more family, judged like the others; a probe never measured is left out.
    from accuracy_aggregate import PROBE_FAMILY, probe_architectures

    probes = probe_architectures("resnet20", kw, (1, 16, 16), n=3, seed=1)
    assert probes == probe_architectures("resnet20", kw, (1, 16, 16), n=3, seed=1)  # the same ones every time
    from slimrt.train.methods.progressive import unit_size

    assert all(w[g] % unit_size(full[g], 8, 4) == 0 and 0 < w[g] <= full[g] for w in probes.values() for g in full)
    (k1, w1), (k2, _), *_ = probes.items()
    lat[k1] = {"b1_p50": 1.1 * 0.8 * pred.ms(net.spec(w1)), "windows": 2}
    check = predictor_check(path, runs, lat, "resnet20", kw, (1, 16, 16), {k1: w1, k2: probes[k2]})
    probe = check["families"][PROBE_FAMILY]
    assert probe["n"] == 1 and probe["rows"][0]["windows"] == 2
    assert probe["rows"][0]["error"] == pytest.approx(1.1 * 0.8 - 1)
    assert probe["rows"][0]["error_relative_to_full"] == pytest.approx(-0.2)


def test_a_usnet_variant_adds_a_comparison_against_both_runs():
    """A US-Nets run trained down to a narrower width (usnet-w8) gives a second comparison, over the seeds that have
    both runs, whose baseline is the widths of both: a searched sub-net faster than every width of the standard run
    gets a match, and elsewhere the better of the two runs counts. The headline comparison stays on ``usnet``."""
    small = {"g0": 1, "g1": 1}  # faster than every GRID width
    prog = {"subnets": [{"name": "m90", "widths": PROG_WIDTHS[0], "macs": 390, "test_accuracy": 89.5},
                        {"name": "m10", "widths": small, "macs": 60, "test_accuracy": 84.0}]}  # fmt: skip
    narrow = [_row("w4", 4, 400, 89.2), _row("w3", 3, 300, 89.4), _row("w0", 0, 40, 78.0)]  # w0: 0.2 ms
    lat = {**LAT, arch_key(PROG_WIDTHS[0]): {"b1_p50": 0.52}, arch_key(small): {"b1_p50": 0.25},
           arch_key(narrow[2]["widths"]): {"b1_p50": 0.2}}  # fmt: skip
    runs = {"usnet": {0: {"grid": GRID}, 1: {"grid": GRID}}, "usnet-w8": {0: {"grid": narrow}},
            "progressive": {0: prog, 1: prog}}  # fmt: skip
    alone = compare_families(runs, lat)["progressive"]
    assert alone["usnet_runs"] == {0: ["usnet"], 1: ["usnet"]} and baseline_note(alone) == ""
    top, low = alone["per_seed"][0]
    assert top["usnet_at_latency"]["name"] == "w3" and low["usnet_at_latency"] is None
    assert alone["goals"]["gap_at_latency_smallest"] is None

    both = compare_families(runs, lat, ("usnet", "usnet-w8"))["progressive"]
    assert both["usnet_runs"] == {0: ["usnet", "usnet-w8"]}  # seed 1 has no usnet-w8 run: left out, not mixed in
    top, low = both["per_seed"][0]
    assert top["usnet_at_latency"]["name"] == "usnet-w8:w3"  # 89.4% beats the standard run's w3 (89.0%)
    assert top["gap_at_latency"] == pytest.approx(0.1)
    assert top["usnet_at_macs"]["name"] == "w4"  # nearest MACs (400): w4 at 90.0% beats usnet-w8's w4 at 89.2%
    assert low["usnet_at_latency"]["name"] == "usnet-w8:w0" and low["gap_at_latency"] == pytest.approx(6.0)
    assert low["usnet_at_macs"]["name"] == "usnet-w8:w0"  # 40 MACs is nearer 60 than w1's 100
    assert both["goals"]["gap_at_latency_smallest"] == pytest.approx(6.0) and both["goals"]["seeds"] == 1
    assert baseline_note(both) == " (baseline: usnet + usnet-w8, the better at each point; seeds 0)"
    # equal MACs: the more accurate width, whichever run it comes from
    runs["usnet-w8"][0]["grid"][0] = _row("w4", 4, 400, 90.5)
    top = compare_families(runs, lat, ("usnet", "usnet-w8"))["progressive"]["per_seed"][0][0]
    assert top["usnet_at_macs"]["name"] == "usnet-w8:w4"


def _stored_results(tmp_path, measured_keys):
    """A results folder with one progressive and one US-Nets run, and an aggregate.json from this machine whose one
    latency window measured ``measured_keys`` (of the architectures in LAT and PROG_WIDTHS)."""
    from accuracy_standard import machine

    cfg = {"arch": "resnet20", "arch_kwargs": {}}
    runs = {"progressive": {**_prog(), "report": _report("macs", [92, 91, 90, 88, 89, 85, 80], ["c00", "c06"])},
            "usnet": {"subnets": GRID[:1], "grid": GRID}}
    for method, run in runs.items():
        (tmp_path / f"{method}-seed0.json").write_text(json.dumps({"method": method, "seed": 0, "config": cfg,
                                                                   **run}))  # fmt: skip
    lat = {**LAT, arch_key(PROG_WIDTHS[0]): {"b1_p50": 0.52}, arch_key(PROG_WIDTHS[1]): {"b1_p50": 0.31}}
    window = {"finished": "t0", "latency": {k: v for k, v in lat.items() if k in measured_keys}}
    (tmp_path / "aggregate.json").write_text(json.dumps({"machine": machine(), "latency_windows": [window],
                                                         "latency_protocol": {"backend": "onnxruntime"}}))  # fmt: skip
    return [*lat]


def test_stored_latency_aggregates_new_run_files_without_measuring(tmp_path, monkeypatch):
    import accuracy_aggregate
    from accuracy_standard import main

    keys = _stored_results(tmp_path, measured_keys=[*LAT, *map(arch_key, PROG_WIDTHS)])
    monkeypatch.setattr(accuracy_aggregate, "measure_architectures", None)  # calling it would fail the test
    assert main(["--aggregate", "--stored-latency", "--results", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 0
    out = json.loads((tmp_path / "aggregate.json").read_text())
    assert len(out["latency_windows"]) == 1 and sorted(out["latency"]) == sorted(keys)
    assert out["latency_protocol"] == {"backend": "onnxruntime"}
    big, small = out["families"]["progressive"]["per_seed"]["0"]
    assert big["usnet_at_latency"]["name"] == "w3" and small["usnet_at_latency"]["name"] == "w1"
    assert (tmp_path / "aggregate.md").is_file() and (tmp_path / "aggregate.png").is_file()


def test_another_machine_adds_a_series_of_its_own_and_keeps_the_stored_one(tmp_path):
    """A session on another CPU must not replace the series stored from the first one: its windows go to
    ``<stem>-<machine slug>``, and the next session on that CPU adds to them."""
    from accuracy_aggregate import machine_slug, series_stem

    amd, intel = {"cpu": "AMD EPYC", "cores": 2}, {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}
    assert machine_slug(intel) == "intel-xeon-2c"
    assert machine_slug({"cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 8}) == "amd-epyc-7b13-8c"
    assert series_stem(tmp_path, "aggregate", intel) == "aggregate"  # nothing stored: the series starts here
    (tmp_path / "aggregate.json").write_text(json.dumps({"machine": amd, "latency_windows": []}))
    assert series_stem(tmp_path, "aggregate", amd) == "aggregate"
    assert series_stem(tmp_path, "aggregate", intel) == "aggregate-intel-xeon-2c"
    assert series_stem(tmp_path, "aggregate-block5", intel) == "aggregate-block5"  # that series is not stored yet
    (tmp_path / "aggregate.json").write_text("{truncated")
    assert series_stem(tmp_path, "aggregate", intel) == "aggregate"  # unreadable: previous_windows starts anew


def test_another_thread_count_or_block_is_a_series_of_its_own(tmp_path, monkeypatch):
    """``--latency-threads N`` / ``--latency-block B`` read and write aggregate-threads<N>-block<B>.*, never the
    standard series' aggregate.json."""
    import accuracy_aggregate
    from accuracy_aggregate import output_stem
    from accuracy_standard import main

    assert [output_stem(None), output_stem(1), output_stem(None, 5), output_stem(2, 5)] == [
        "aggregate", "aggregate-threads1", "aggregate-block5", "aggregate-threads2-block5"]  # fmt: skip
    _stored_results(tmp_path, measured_keys=[*LAT, *map(arch_key, PROG_WIDTHS)])
    standard = tmp_path / "aggregate.json"
    series = json.loads(standard.read_text())
    series["latency_protocol"] = {"backend": "onnxruntime", "threads": 1, "block": 5}
    (tmp_path / "aggregate-threads1-block5.json").write_text(json.dumps(series))
    standard.write_text(json.dumps({**json.loads(standard.read_text()), "latency_windows": []}))
    before = standard.read_text()
    monkeypatch.setattr(accuracy_aggregate, "measure_architectures", None)
    args = ["--aggregate", "--stored-latency", "--results", str(tmp_path), "--work-dir", str(tmp_path / "w")]
    with pytest.raises(SystemExit, match="holds no latency window"):
        main(args)  # the standard series has none: the other series' windows are not read
    assert main([*args, "--latency-threads", "1", "--latency-block", "5"]) == 0
    out = json.loads((tmp_path / "aggregate-threads1-block5.json").read_text())
    assert out["latency_protocol"] == {"backend": "onnxruntime", "threads": 1, "block": 5}
    assert len(out["latency_windows"]) == 1 and out["families"]["progressive"]["per_seed"]
    md = (tmp_path / "aggregate-threads1-block5.md").read_text()
    assert "aggregate-threads1-block5.json" in md and (tmp_path / "aggregate-threads1-block5.png").is_file()
    assert standard.read_text() == before and not (tmp_path / "aggregate.md").exists()
    assert (tmp_path / "w" / "aggregate-threads1-block5.log").is_file()


@pytest.mark.parametrize("argv", [["--latency-block", "0", "--aggregate"], ["--latency-threads", "0", "--aggregate"],
                                  ["--latency-block", "5", "--method", "usnet"]])  # fmt: skip
def test_latency_series_options_are_checked(argv, capsys):
    from accuracy_standard import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "--latency-" in capsys.readouterr().err


def test_stored_latency_names_an_architecture_no_window_measured(tmp_path, monkeypatch):
    import accuracy_aggregate
    from accuracy_standard import main

    _stored_results(tmp_path, measured_keys=[*LAT, arch_key(PROG_WIDTHS[0])])  # the m20 sub-net never measured
    monkeypatch.setattr(accuracy_aggregate, "measure_architectures", None)
    before = (tmp_path / "aggregate.json").read_text()
    with pytest.raises(SystemExit, match=r"1 of 6 architectures .* never measured.*without --stored-latency"):
        main(["--aggregate", "--stored-latency", "--results", str(tmp_path), "--work-dir", str(tmp_path / "w")])
    assert (tmp_path / "aggregate.json").read_text() == before  # nothing half-written
    with pytest.raises(SystemExit):
        main(["--stored-latency", "--method", "usnet"])  # an aggregate option


def test_export_cache_exports_each_architecture_once_and_the_files_run(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    from accuracy_aggregate import export_architectures

    from slimrt.models import create_model
    from slimrt.train import DynamicNet

    kw = {"in_channels": 1, "num_classes": 10, "widths": (8, 8, 16)}
    net = DynamicNet(create_model("resnet20", **kw), torch.zeros(1, 1, 8, 8))
    full = net.full_spec().widths
    half = {g: max(2, c // 2) for g, c in full.items()}
    archs = {arch_key(full): full, arch_key(half): half}
    cache = tmp_path / "cache"
    paths = export_architectures(archs, "resnet20", kw, (1, 8, 8), cache)
    assert set(paths) == set(archs) and len(set(paths.values())) == 2 and all(p.is_file() for p in paths.values())
    stamps = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    assert export_architectures(archs, "resnet20", kw, (1, 8, 8), cache) == paths  # reused, not exported again
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == stamps
    other = export_architectures(archs, "resnet20", {**kw, "num_classes": 5}, (1, 8, 8), cache)
    assert set(other.values()).isdisjoint(paths.values())  # another network: other files
    assert not list(cache.glob("*.part"))
    x = np.zeros((3, 1, 8, 8), np.float32)
    for key, path in paths.items():  # each file is its sub-net, with a dynamic batch
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (3, 10)
        graph = onnx.load(str(path)).graph
        stem = next(n for n in graph.node if n.op_type == "Conv")
        dims = {i.name: list(i.dims) for i in graph.initializer}
        assert dims[stem.input[1]][0] == archs[key]["conv1"]
    from accuracy_standard import main

    with pytest.raises(SystemExit):
        main(["--aggregate", "--export-only"])
    assert "--export-only needs --export-cache DIR" in capsys.readouterr().err
