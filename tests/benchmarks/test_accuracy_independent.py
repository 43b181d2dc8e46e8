"""The standard benchmark's independent controls (benchmarks/accuracy_independent.py) on a tiny configuration:
stopped by ``--max-minutes 0`` after each epoch or network, resumed, and compared with one uninterrupted training."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_independent import progressive_run, run_independent, uniform_match  # noqa: E402
from accuracy_standard import build_config, load_data, main, pretrain  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY = {"dataset": "synthetic", "limit_train": 256, "val_size": 64, "pretrain_epochs": 2, "batch_size": 64,
        "arch_kwargs": {"widths": [4, 4, 8]}, "subnets": 3, "min_macs": 0.3}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A pre-trained tiny network and a hand-written progressive run file of three sub-nets (full one first)."""
    from slimrt.train.trainer import build_net

    root = tmp_path_factory.mktemp("standard")
    results, work = root / "results", root / "work"
    info = pretrain(0, results, work, TINY, None)
    cfg = build_config(0, TINY, method="progressive")
    net = build_net(cfg, load_data(cfg))
    groups = [g.name for g in net.prunable_groups]
    specs = [net.full_spec("p100"), net.spec({groups[0]: 2, groups[-1]: 6}, name="p70"),
             net.spec({g: 2 for g in groups[:-1]} | {groups[-1]: 4}, name="p40")]  # fmt: skip
    rows = [{"name": s.name, "widths": s.widths, "macs": s.macs, "params": s.params, "val_accuracy": 50.0,
             "test_accuracy": 50.0} for s in specs]  # fmt: skip
    (results / "progressive-seed0.json").write_text(json.dumps({"method": "progressive", "seed": 0,
                                                                "subnets": rows}))  # fmt: skip
    return results, work, info, net, specs


def _run(setup, method, max_minutes, overrides=TINY):
    results, work, info, _, _ = setup
    return run_independent(method, 0, results, work, overrides, "test", None, info, max_minutes=max_minutes)


def test_interrupted_twins_resume_to_the_uninterrupted_result(setup, caplog):
    from slimrt.train.methods.independent import train_independent

    results, work, info, net, specs = setup
    out, folder = results / "independent-seed0.json", work / "independent-seed0"
    with caplog.at_level(logging.INFO, logger="bench.accuracy.independent"):
        assert _run(setup, "independent", 0) == 0  # p100 from pre-training, then one epoch of p70
    assert not out.exists() and "run the same command again to continue" in caplog.text
    assert (folder / "p100.json").exists() and (folder / "p70.resume.pt").exists()
    assert not (folder / "p70.json").exists() and not (folder / "p40.resume.pt").exists()
    assert _run(setup, "independent", 0) == 0  # p70's second epoch; no room left for p40
    assert not out.exists() and (folder / "p70.json").exists() and not (folder / "p70.resume.pt").exists()
    assert not (folder / "p40.resume.pt").exists()
    assert _run(setup, "independent", None) == 0
    run = json.loads(out.read_text())
    assert not list(folder.glob("*.resume.pt"))
    assert (run["method"], run["seed"], run["mode"]) == ("independent", 0, "standard")
    subnets = run["subnets"]
    assert [r["name"] for r in subnets] == ["p100", "p70", "p40"]
    assert [r["widths"] for r in subnets] == [s.widths for s in specs]
    assert [(r["macs"], r["params"]) for r in subnets] == [(s.macs, s.params) for s in specs]
    assert [r["twin_of"] for r in subnets] == [["p100"], ["p70"], ["p40"]]
    assert [r["source"] for r in subnets] == ["pretrained", "trained", "trained"]
    full, p70, p40 = subnets
    assert (full["test_accuracy"], full["val_accuracy"]) == (info["test_accuracy"], info["val_accuracy"])
    assert full["train_macs"] == info["train_macs"]
    images = 2 * 256  # two epochs of 256 images (4 full batches of 64)
    assert [p70["train_macs"], p40["train_macs"]] == [3 * images * specs[1].macs, 3 * images * specs[2].macs]
    assert run["budget"]["spent_macs"] == sum(r["train_macs"] for r in subnets)
    assert run["budget"]["other_methods_macs"] == info["train_macs"] + run["budget"]["usnet_budget_macs"]
    assert run["budget"]["epochs_per_subnet"] == 2 and "pre-training recipe" in run["budget"]["rule"]
    # the twin stopped after its first epoch and resumed equals one uninterrupted training of that architecture
    cfg = build_config(0, TINY, method="independent")
    [once], _ = train_independent(cfg, load_data(cfg), net, [specs[1]])
    assert (p70["test_accuracy"], p70["val_accuracy"]) == (once.test_accuracy, once.val_accuracy)
    # finished work under other settings is an error, never mixed in
    out.unlink()
    with pytest.raises(SystemExit, match="other settings"):
        _run(setup, "independent", None, {**TINY, "lr": 0.05})


def test_max_minutes_through_the_command_stops_after_one_epoch(setup, caplog, tmp_path):
    """``--max-minutes 0`` on the command: the deadline it shares with pre-training stops the uniform controls after
    their first trained epoch, with no run file and the epoch kept for the next command."""
    results, _, _, _, _ = setup
    work = tmp_path / "work"  # its own: the uniform controls' test below trains them from scratch
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        with caplog.at_level(logging.INFO, logger="bench.accuracy.independent"):
            rc = main(["--method", "independent-uniform", "--seed", "0", "--results", str(results), "--work-dir",
                       str(work), "--max-minutes", "0", *[f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]])
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
            h.close()
    assert rc == 0 and "1 of 3 networks done, time is up (--max-minutes 0.0)" in caplog.text
    assert not (results / "independent-uniform-seed0.json").exists()
    assert len(list((work / "independent-uniform-seed0").glob("*.resume.pt"))) == 1


def test_uniform_controls_match_macs_on_one_channel_steps(setup):
    results, _, info, net, specs = setup
    assert _run(setup, "independent-uniform", None) == 0
    run = json.loads((results / "independent-uniform-seed0.json").read_text())
    widest = max(g.channels for g in net.prunable_groups)
    uniform = [net.uniform_spec(c / widest, f"w{c}") for c in range(1, widest + 1)]
    assert [r["twin_of"] for r in run["subnets"]] == [["p100"], ["p70"], ["p40"]]
    for row, target in zip(run["subnets"], specs, strict=True):
        [same] = [u for u in uniform if u.widths == row["widths"]]
        assert row["name"] == same.name and row["macs"] == same.macs
        assert all(abs(u.macs - target.macs) >= abs(same.macs - target.macs) for u in uniform)
    assert run["subnets"][0]["test_accuracy"] == info["test_accuracy"]  # uniform at full width: the pre-trained net
    assert uniform_match(net, specs[2].macs).macs < specs[0].macs


def test_missing_progressive_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=r"progressive-seed3\.json is missing.*--method progressive --seed 3"):
        progressive_run(tmp_path, 3)
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:  # the command fails before pre-training anything
        with pytest.raises(SystemExit, match="progressive-seed3.json is missing"):
            main(["--method", "independent", "--seed", "3", "--results", str(tmp_path), "--work-dir", str(tmp_path),
                  "--set", "dataset=synthetic"])  # fmt: skip
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
            h.close()
    assert not list(tmp_path.glob("pretrain*"))
    (tmp_path / "progressive-seed3.json").write_text('{"subnets": []}')
    with pytest.raises(SystemExit, match="not a progressive run file"):
        progressive_run(tmp_path, 3)


def test_fingerprint_is_unchanged_by_config_fields_added_at_their_default():
    """A field added to SearchConfig later leaves the fingerprint of unfinished runs as it was: the digest below is
    the one the code wrote at c092ceb, before ``usnet_min_width`` existed (a field added without listing it in
    ``ADDED_FIELDS`` fails here), while a real settings change alters it."""
    from accuracy_independent import _fingerprint

    from slimrt.train.config import SearchConfig

    cfg = build_config(0, TINY, method="independent")
    spec = type("Spec", (), {"name": "w3", "widths": {"g0": 3}})()
    assert _fingerprint("independent", cfg, spec) == "b6e458695feb1e055acf"
    assert _fingerprint("independent", cfg.updated(lr=0.05), spec) != "b6e458695feb1e055acf"
    usnet = SearchConfig.build({**cfg.model_dump(), "method": "usnet", "usnet_min_width": 0.125})
    assert _fingerprint("independent", usnet, spec) != _fingerprint("independent", usnet.updated(usnet_min_width=0.25),
                                                                     spec)  # fmt: skip
