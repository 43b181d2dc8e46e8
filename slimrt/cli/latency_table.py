"""``slimrt latency-table``: measure a network's per-layer latency table on this device (ONNX Runtime)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from slimrt.schema import DeviceProfile, LatencyTable
    from slimrt.train.dynamic import DynamicNet

__all__ = ["latency_table", "measure_net_table"]


CALIBRATION_STREAM = 0x5C1
"""Second word of the calibration networks' random seed (see :func:`calibration_widths`)."""


def calibration_widths(net: DynamicNet, n: int, group_size: int = 8, min_units: int = 4,
                       seed: int = 0) -> list[dict[str, int]]:  # fmt: skip
    """``n`` whole networks for :func:`slimrt.bench.layers.fit_alignment`: first ``ceil(n / 2)`` uniform widths
    (:meth:`DynamicNet.uniform_spec` at ``c / C``, ``c`` evenly spaced on the widest group's 1-channel grid: aligned
    and unaligned channel counts alike), then random widths on the unit grid (the search's own kind). The random
    stream is ``(seed, CALIBRATION_STREAM)``, not ``seed`` alone, so the networks a table is fitted on are never the
    random sub-nets the benchmarks judge it on (``benchmarks/_common.random_unit_grid_widths`` draws from ``seed``)."""
    import numpy as np

    from slimrt.train.methods.steps import unit_size

    groups = {g.name: g.channels for g in net.prunable_groups}
    wide = max(groups.values())
    low = max(1, wide // 4)  # the standard US-Nets grid's range: 25% to 100% of every group
    rng = np.random.default_rng((seed, CALIBRATION_STREAM))
    n_uniform = (n + 1) // 2
    out = [net.uniform_spec(round(float(c)) / wide, "u").widths
           for c in np.linspace(low, wide, n_uniform + 1)[:-1]]  # the full network is measured anyway
    for _ in range(n - n_uniform):
        w = {}
        for g, ch in groups.items():
            u = unit_size(ch, group_size, min_units)
            w[g] = int(u * rng.integers(1, ch // u + 1))
        out.append(w)
    return out


def measure_net_table(net: DynamicNet, device_profile: DeviceProfile, *, group_size: int = 8, min_units: int = 4,
                      full: bool = True, calibrate: int = 0, fit: str = "align", progress: bool = False,
                      **kwargs: Any) -> LatencyTable:  # fmt: skip
    """Measure ``net``'s latency table: every part over the unit grid, the call cost, and (``full``) the full
    network and the smallest sub-net exported as deployed, which calibrate ``other_ms`` and ``scale``, and a sub-net
    whose convolutions run in the plain layout, which calibrates ``plain_factor`` (where the device has one). With
    ``calibrate`` > 0, that many whole networks (:func:`calibration_widths`) and the full one are then measured end to
    end, interleaved, and the table is refitted on them (kept only if the fit succeeds): ``fit="align"``
    (:func:`slimrt.bench.layers.fit_alignment`, channel alignment), ``"stages"``
    (:func:`slimrt.bench.layers.fit_stage_scales`, one scale per resolution stage) or ``"best"`` (both; the lower
    leave-one-out median error is kept). ``kwargs`` go to :func:`slimrt.bench.layers.measure_latency_table`
    (threads, runs, warmup, duration_s, batch_size)."""
    import torch

    from slimrt.bench.layers import measure_latency_table, plain_calibration_widths, probe_layout_block
    from slimrt.exporters.onnx import export_module
    from slimrt.train.latency import layer_parts

    parts, layers, groups = layer_parts(net, group_size, min_units)
    from slimrt.train.methods.progressive import min_keep, unit_size

    model = small = small_widths = plain = plain_widths = None
    example = torch.zeros(1, *net.input_shape)
    if full:
        model = export_module(net.extract(net.full_spec()), example)
        small_widths = {g.name: min_keep(g.channels, unit_size(g.channels, group_size, min_units))
                        for g in net.prunable_groups}  # fmt: skip
        small = export_module(net.extract(net.spec(small_widths, name="smallest")), example)
        if "layout_block" not in kwargs:  # setdefault would probe even when the caller gave the block
            kwargs["layout_block"] = probe_layout_block()
        block = kwargs["layout_block"]
        if block is not None:
            plain_widths = plain_calibration_widths({g.name: g.channels for g in net.prunable_groups}, block)
        if plain_widths is not None:
            plain = export_module(net.extract(net.spec(plain_widths, name="plain")), example)
    table = measure_latency_table(parts, layers, groups, list(net.input_shape), device_profile, full_model=model,
                                  small_model=small, small_widths=small_widths, plain_model=plain,
                                  plain_widths=plain_widths, progress=progress, **kwargs)  # fmt: skip
    if calibrate > 0:
        table = _calibrate(net, table, device_profile, calibrate, group_size, min_units, kwargs, fit)
    return table


FITS = ("align", "stages", "best")
"""How ``--calibrate`` refits the table: channel alignment, stage scales, or whichever predicts better."""


def _calibrate(net: DynamicNet, table: LatencyTable, prof: DeviceProfile, n: int, group_size: int, min_units: int,
               kwargs: dict[str, Any], fit: str = "align") -> LatencyTable:  # fmt: skip
    """Measure ``n`` calibration networks and the full one end to end (``slimrt bench``'s interleaved protocol) and
    refit ``table`` on them as :func:`measure_net_table`'s ``fit`` says; the table unchanged (a warning logged)
    when no fit succeeds."""
    import tempfile

    import numpy as np
    import torch

    from slimrt.bench.layers import _measure
    from slimrt.exporters.onnx import export_module

    log = logging.getLogger("slimrt.latency_table")
    example = torch.zeros(1, *net.input_shape)
    nets = [net.full_spec().widths, *calibration_widths(net, n, group_size, min_units)]
    if table.plain_widths is not None:  # the plain-layout network: plain_factor is refitted jointly
        nets.append(table.plain_widths)
    bs = kwargs.get("batch_size") or prof.batch_sizes[0]
    x = np.random.default_rng(1).standard_normal((bs, *net.input_shape)).astype(np.float32)
    models = {f"n{k}": export_module(net.extract(net.spec(w, name=f"n{k}")), example) for k, w in enumerate(nets)}
    with tempfile.TemporaryDirectory(prefix="slimrt-ltcal-") as d:  # the table's own interleaved measurement
        lat = _measure(models, dict.fromkeys(models, x), Path(d),
                       kwargs.get("threads") if kwargs.get("threads") is not None else prof.threads,
                       kwargs.get("warmup") or prof.warmup, kwargs.get("runs") or prof.runs,
                       kwargs.get("duration_s"))  # fmt: skip
    samples = [(w, lat[f"n{k}"]) for k, w in enumerate(nets)]
    return refit(table, samples, fit, log)


def refit(table: LatencyTable, samples: list[tuple[dict[str, int], float]], fit: str,
          log: logging.Logger | None = None) -> LatencyTable:  # fmt: skip
    """``table`` refitted on measured whole networks ``samples`` by ``fit`` (:data:`FITS`); a fit that fails is
    logged as a warning, and with none left the table comes back unchanged."""
    from slimrt.bench.layers import fit_alignment, fit_stage_scales

    log = log or logging.getLogger("slimrt.latency_table")
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}: one of {', '.join(FITS)}")
    kinds = {"align": ["align"], "stages": ["stages"], "best": ["align", "stages"]}[fit]
    fitted: list[LatencyTable] = []
    for kind in kinds:
        try:
            t = fit_alignment(table, samples) if kind == "align" else fit_stage_scales(table, samples)
        except ValueError as e:
            log.warning("latency table: %s fit on %d networks failed (%s)", "alignment" if kind == "align"
                        else "stage-scale", len(samples), e)  # fmt: skip
            continue
        fitted.append(t)
        log.info("latency table: %s fit, leave-one-out median error %.1f%%, max %.1f%% over %d networks",
                 "alignment" if kind == "align" else "stage-scale", 100 * t.fit["loo_median_rel_error"],
                 100 * t.fit["loo_max_rel_error"], len(samples))  # fmt: skip
    if not fitted:
        log.warning("latency table: keeping the two-point calibration")
        return table
    best = min(fitted, key=lambda t: (t.fit["loo_median_rel_error"], t.fit["loo_max_rel_error"]))
    if len(fitted) > 1:
        best = best.model_copy(update={"fit": {**best.fit, "chosen_over": ",".join(
            f"{t.fit['kind']}:{t.fit['loo_median_rel_error']:.4f}" for t in fitted if t is not best)}})
    return best


def latency_table(
    model: Annotated[Path | None, typer.Argument(help="Checkpoint (model.pt); or give --arch.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture (registry name) when no checkpoint is given.")] = None,
    in_channels: Annotated[int, typer.Option(help="Input channels (with --arch).")] = 3,
    image_size: Annotated[int, typer.Option(help="Input height and width (with --arch).")] = 32,
    num_classes: Annotated[int, typer.Option(help="Classifier outputs (with --arch).")] = 10,
    device: Annotated[str, typer.Option(help="Device profile name or TOML path (ONNX Runtime CPU).")] = "cpu",
    group_size: Annotated[int, typer.Option(help="Channels per unit: the grid step (as in train).")] = 8,
    min_units: Annotated[int, typer.Option(help="As in train (--min-units): narrow groups get smaller units.")] = 4,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: the device profile's).")] = None,
    runs: Annotated[int | None, typer.Option(help="Timed rounds per grid (default: the device profile's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch (default: the device profile's first).")] = None,
    calibrate: Annotated[int, typer.Option(
        min=0, help="Also measure this many whole networks end to end (uniform and random widths) and refit the "
                    "table's scales with channel alignment: layers whose channel counts are multiples of the SIMD "
                    "block run faster inside a network than alone (0: off; 12 or more recommended).")] = 0,  # fmt: skip
    fit: Annotated[str, typer.Option(
        help="How --calibrate refits the table: 'align' (a scale for layers whose channel counts are multiples of "
             "the SIMD block, one for the rest), 'stages' (one scale per input resolution: the layers of a stage "
             "share activations and layout conversions), or 'best' (both; the lower leave-one-out median error "
             "on the measured networks is kept).")] = "align",  # fmt: skip
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the table (JSON).")] = Path(
        "latency-table.json"
    ),
) -> None:
    """Measure the latency of every layer of a network over the unit grid of its channel-group widths.

    End to end, it also measures the call cost, the full network and the smallest sub-net: they calibrate the table.
    Where this CPU's ONNX Runtime runs some convolutions outside its blocked layout, it measures one network of them.
    (Those are convolutions with at least the block's input channels and not a multiple of 4: see plain_factor.)

    Example: slimrt latency-table --arch resnet20 --in-channels 1 --image-size 28 -o table.json

    Refitted on 16 whole networks: ... --calibrate 16 --fit best -o table.json

    Then: slimrt train ... --cost latency --latency-table table.json
    """
    from rich.console import Console

    from slimrt.bench import load_device_profile
    from slimrt.errors import ConfigError
    from slimrt.io import atomic_write_text

    if fit not in FITS:
        raise ConfigError(f"--fit must be one of {', '.join(FITS)}, got {fit!r}")
    if fit != "align" and calibrate == 0:
        raise ConfigError(f"--fit {fit} refits the table on whole networks: give --calibrate N (12 or more)")
    prof = load_device_profile(device)
    if model is not None:
        from slimrt.train.checkpoint import load_checkpoint

        net = load_checkpoint(model, arch).dynamic_net()
    elif arch is not None:
        import torch

        from slimrt.models.registry import create_model
        from slimrt.train.dynamic import DynamicNet

        net = DynamicNet(create_model(arch, in_channels=in_channels, num_classes=num_classes),
                         torch.zeros(1, in_channels, image_size, image_size))  # fmt: skip
    else:
        raise ConfigError("usage: slimrt latency-table MODEL.pt -o table.json (or --arch NAME --in-channels ...)")
    table = measure_net_table(net, prof, group_size=group_size, min_units=min_units, threads=threads, runs=runs,
                              batch_size=batch_size, calibrate=calibrate, fit=fit,
                              progress=True)  # fmt: skip
    atomic_write_text(out, table.model_dump_json(indent=1))
    if table.fit and table.stage_scales is not None:
        scales = ", ".join(f"{st} {v:.3f}" for st, v in table.stage_scales.items())
        Console().print(f"stage-scale fit on {table.fit['networks']} networks: {scales}; leave-one-out median error "
                        f"{100 * float(table.fit['loo_median_rel_error']):.1f}%, max "
                        f"{100 * float(table.fit['loo_max_rel_error']):.1f}%", highlight=False)  # fmt: skip
    elif table.fit:
        Console().print(f"alignment fit on {table.fit['networks']} networks: channels in multiples of {table.align} "
                        f"scale {table.aligned_scale:.3f}, others {table.scale:.3f}; leave-one-out median error "
                        f"{100 * float(table.fit['loo_median_rel_error']):.1f}%", highlight=False)  # fmt: skip
    if table.plain_factor is not None:
        Console().print(f"plain-layout convolutions (input channels >= {table.layout_block}, not a multiple of 4) "
                        f"cost {table.plain_factor:.2f}x their interpolated entries (calibrated on a "
                        f"{table.plain_measured_ms:.3f} ms network of them)", highlight=False)  # fmt: skip
    Console().print(
        f"latency table: {len(table.parts)} parts, {len(table.layers)} layers, {table.measurements} models measured; "
        f"call {table.fixed_ms:.4f} ms, other {table.other_ms:.4f} ms, full predicted "
        f"{table.predict_ms(table.groups):.4f} ms -> {out}", highlight=False)
