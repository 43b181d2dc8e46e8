"""``slimrt latency-table``: measure a network's per-layer latency table on this device (ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from slimrt.schema import DeviceProfile, LatencyTable
    from slimrt.train.dynamic import DynamicNet

__all__ = ["latency_table", "measure_net_table"]


def measure_net_table(net: DynamicNet, device_profile: DeviceProfile, *, group_size: int = 8, min_units: int = 4,
                      full: bool = True, progress: bool = False, **kwargs: Any) -> LatencyTable:  # fmt: skip
    """Measure ``net``'s latency table: every part over the unit grid, the call cost, and (``full``) the full
    network and the smallest sub-net exported as deployed, which calibrate ``other_ms`` and ``scale``. ``kwargs`` go to
    :func:`slimrt.bench.layers.measure_latency_table` (threads, runs, warmup, duration_s, batch_size)."""
    import torch

    from slimrt.bench.layers import measure_latency_table
    from slimrt.exporters.onnx import export_module
    from slimrt.train.latency import layer_parts

    parts, layers, groups = layer_parts(net, group_size, min_units)
    from slimrt.train.methods.progressive import min_keep, unit_size

    model = small = small_widths = None
    example = torch.zeros(1, *net.input_shape)
    if full:
        model = export_module(net.extract(net.full_spec()), example)
        small_widths = {g.name: min_keep(g.channels, unit_size(g.channels, group_size, min_units))
                        for g in net.prunable_groups}  # fmt: skip
        small = export_module(net.extract(net.spec(small_widths, name="smallest")), example)
    return measure_latency_table(parts, layers, groups, list(net.input_shape), device_profile, full_model=model,
                                 small_model=small, small_widths=small_widths, progress=progress,
                                 **kwargs)  # fmt: skip


def latency_table(
    model: Annotated[Path | None, typer.Argument(help="Checkpoint (model.pt); or give --arch.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture (registry name) when no checkpoint is given.")] = None,
    in_channels: Annotated[int, typer.Option(help="Input channels (with --arch).")] = 3,
    image_size: Annotated[int, typer.Option(help="Input height and width (with --arch).")] = 32,
    num_classes: Annotated[int, typer.Option(help="Classifier outputs (with --arch).")] = 10,
    device: Annotated[str, typer.Option(help="Device profile name or TOML path (ONNX Runtime CPU).")] = "cpu",
    group_size: Annotated[int, typer.Option(help="Channels per unit: the grid step (as in train).")] = 8,
    min_units: Annotated[int, typer.Option(help="As in train: narrow groups get smaller units.")] = 4,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: the device profile's).")] = None,
    runs: Annotated[int | None, typer.Option(help="Timed rounds per grid (default: the device profile's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch (default: the device profile's first).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the table (JSON).")] = Path(
        "latency-table.json"
    ),
) -> None:
    """Measure the latency of every layer of a network over the unit grid of its channel-group widths."""
    from rich.console import Console

    from slimrt.bench import load_device_profile
    from slimrt.errors import ConfigError
    from slimrt.io import atomic_write_text

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
                              batch_size=batch_size, progress=True)  # fmt: skip
    atomic_write_text(out, table.model_dump_json(indent=1))
    Console().print(
        f"latency table: {len(table.parts)} parts, {len(table.layers)} layers, {table.measurements} models measured; "
        f"call {table.fixed_ms:.4f} ms, other {table.other_ms:.4f} ms, full predicted "
        f"{table.predict_ms(table.groups):.4f} ms -> {out}", highlight=False)
