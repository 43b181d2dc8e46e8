"""The export pipeline: checkpoint -> validated artifact directory, written beside the target and renamed into place.

Steps: load the checkpoint (``weights_only``), write the full tensors once (``subnets/weights.bin``),
export each selected sub-net (``net.extract(spec)``) to ONNX with its initializers pointing into the
weights file (:mod:`.weights`), validate each in ONNX Runtime against PyTorch (:mod:`.validate`),
optionally add ``torch.export`` programs and TensorRT engines, write the manifest, verify the whole
directory, and only then rename it to the target. Until that rename the work lives in a hidden
``.<target>.tmp-XXXX`` directory, so an interrupted export never leaves a complete-looking artifact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slimrt.errors import ConfigError, DataError, ExportError, ValidationMismatchError
from slimrt.io import atomic_write_bytes, dir_bytes, staged_dir
from slimrt.schema import (
    SCHEMA_VERSION,
    EngineRef,
    EngineSet,
    FileRef,
    LatencyTable,
    Manifest,
    Producer,
    SubnetEntry,
    SubnetSpec,
    TensorSpec,
    sha256_file,
)

if TYPE_CHECKING:
    from rich.console import Console

    from slimrt.train.checkpoint import Checkpoint
    from slimrt.train.dynamic import DynamicNet

__all__ = [
    "ExportOptions",
    "SubnetReport",
    "ExportResult",
    "export_artifact",
    "add_engines",
    "select_subnets",
    "WEIGHTS_PATH",
]

log = logging.getLogger(__name__)

WEIGHTS_PATH = "subnets/weights.bin"
Hook = Callable[[str, Path], None]


class ExportOptions(BaseModel):
    """Every knob of ``slimrt export`` (the CLI only parses into this)."""

    model_config = ConfigDict(extra="forbid")

    subnets: list[str] | None = Field(default=None, description="sub-net names to export; None = all")
    opset: int | None = Field(default=None, ge=13, description="ONNX opset; None = the exporter's default")
    dynamic_batch: bool = False
    atol: float = Field(default=1e-4, ge=0)
    allow_mismatch: bool = False
    force: bool = False
    torch_programs: bool = False
    tensorrt: bool = False
    fp16: bool = False
    data: Path | None = Field(default=None, description="dataset folder for real validation inputs")
    arch: str | None = Field(default=None, description="architecture override (import path the user trusts)")
    validation_samples: int = Field(default=256, ge=0, description="real test images used for validation")
    random_samples: int = Field(default=16, ge=1)
    seed: int = 0

    @field_validator("subnets")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        names = [s.strip() for s in v if s.strip()]
        if not names or names == ["all"]:
            return None
        return names


class SubnetReport(BaseModel):
    """What export did for one sub-net."""

    name: str
    macs: int
    params: int
    test_accuracy: float | None = None
    onnx_bytes: int
    max_abs_diff: float
    max_abs_diff_real: float | None = None
    max_abs_diff_random: float
    argmax_agreement: float | None = None
    ok: bool
    shared_tensors: int
    sliced_tensors: int
    inline_tensors: int
    inline_bytes: int


class ExportResult(BaseModel):
    """Summary of an export (rendered as a table or dumped with ``--json``)."""

    artifact: str
    ok: bool
    opset: int
    dynamic_batch: bool
    atol: float
    validation_inputs: str
    weights_bytes: int
    total_bytes: int
    subnets: list[SubnetReport]
    torch_programs: bool = False
    engines: EngineSet | None = None
    seconds: float


# --------------------------------------------------------------------------------------------------------- helpers


def select_subnets(available: list[SubnetSpec], names: list[str] | None) -> list[SubnetSpec]:
    """The requested sub-nets, largest (MACs) first; unknown names raise ConfigError listing what exists."""
    if names is None:
        chosen = list(available)
    else:
        by_name = {s.name: s for s in available}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"unknown sub-net(s) {unknown}; the checkpoint has {list(by_name)} (or use 'all')")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
    if not chosen:
        raise ConfigError("the checkpoint holds no sub-nets to export")
    return sorted(chosen, key=lambda s: s.macs, reverse=True)


def _versions() -> Producer:
    import onnx
    import onnxruntime
    import torch

    from slimrt import __version__

    return Producer(slimrt=__version__, torch=str(torch.__version__), onnx=onnx.__version__,
                    onnxruntime=onnxruntime.__version__)


def _file_ref(root: Path, rel: str) -> FileRef:
    path = root / rel
    return FileRef(path=rel, sha256=sha256_file(path), bytes=path.stat().st_size)


def _check_target(target: Path, force: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise ExportError(f"{target} already exists; pass --force to replace it")
    if not target.is_dir() or target.is_symlink():
        raise ExportError(f"{target} exists and is not an artifact directory; refusing to replace it even with --force")
    if any(target.iterdir()) and not (target / "manifest.json").is_file():
        raise ExportError(
            f"{target} is a non-empty directory without manifest.json (not a slimrt artifact); "
            "refusing to replace it even with --force"
        )


PREPROCESS_KEYS = ("input_size", "grayscale", "resize", "crop_fraction", "train_augmentation")
"""Image-folder preprocessing copied from the checkpoint into the manifest's input spec."""


def _preprocess(info: dict | None) -> dict | None:
    if not info:
        return None
    return {k: info[k] for k in PREPROCESS_KEYS if k in info}


def _image_options(info: dict, ckpt: Checkpoint) -> dict:
    from slimrt.train.imagefolder import image_options

    return {**image_options(info), "crop_fraction": info.get("crop_fraction", 0.875), "mean": list(ckpt.mean),
            "std": list(ckpt.std)}  # fmt: skip


def _real_inputs(ckpt: Checkpoint, options: ExportOptions) -> tuple[np.ndarray | None, str]:
    if options.validation_samples == 0:
        return None, "random only (--validation-samples 0)"
    from slimrt.train.data import load_dataset

    try:
        image = ckpt.extra.get("image_folder")  # an image folder is decoded as it was for training
        ds = load_dataset(ckpt.dataset, root=options.data, image_options=_image_options(image, ckpt) if image else None)
    except DataError as e:
        log.warning("validating on random inputs only: dataset %r unavailable (%s)", ckpt.dataset, e)
        return None, f"random only (dataset {ckpt.dataset!r} not found)"
    x = ds.x_test[: options.validation_samples]
    if tuple(x.shape[1:]) != tuple(ckpt.input_shape):
        raise ExportError(f"dataset {ckpt.dataset!r} images {tuple(x.shape[1:])} do not fit the model input "
                          f"{tuple(ckpt.input_shape)}")
    return x.numpy().astype(np.float32), f"{len(x)} {ds.name} test images"


def _progress(console: Console | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slimrt.progress import LogProgress, plain_progress_wanted

    if console is not None and plain_progress_wanted(console):  # redirected output: periodic plain lines
        return LogProgress(console=console)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=console is None,
    )


def _reference(net: DynamicNet, spec: SubnetSpec) -> Callable[[Any], Any]:
    def run(x: Any) -> Any:
        with net.use(spec):
            return net(x)

    return run


# --------------------------------------------------------------------------------------------------------- export


def export_artifact(
    checkpoint: str | Path | Checkpoint,
    out_dir: str | Path,
    options: ExportOptions | None = None,
    *,
    console: Console | None = None,
    hook: Hook | None = None,
) -> ExportResult:
    """Export a checkpoint to a validated artifact directory at ``out_dir``.

    Args:
        checkpoint: a ``model.pt`` path or a loaded :class:`~slimrt.train.checkpoint.Checkpoint`.
        out_dir: the artifact directory to create (refused if it exists unless ``options.force``).
        options: export knobs.
        console: where to draw the progress bar and the per-sub-net lines (None: quiet).
        hook: testing aid, called as ``hook(event, staging_dir)`` after each step (``"weights"``, ``"onnx:<name>"``,
            ``"onnx"``, ``"validated"``, ``"manifest"``); it may modify files or raise to simulate a crash.

    Raises:
        ExportError: target exists without force, export or verification failed.
        ValidationMismatchError: a sub-net differs from PyTorch by more than ``atol`` (nothing is written).
        BackendUnavailableError: ``tensorrt`` requested where TensorRT or a GPU is missing.
    """
    import torch

    from slimrt.artifact import verify_artifact, write_manifest
    from slimrt.exporters.onnx import INPUT_NAME, OUTPUT_NAME, export_module, graph_opset
    from slimrt.exporters.validate import make_validation_inputs, validate_subnet
    from slimrt.exporters.weights import WeightStore
    from slimrt.train.checkpoint import Checkpoint, load_checkpoint

    options = options or ExportOptions()
    start = time.perf_counter()
    target = Path(out_dir).expanduser().absolute()
    if options.fp16 and not options.tensorrt:
        raise ConfigError("--fp16 applies to TensorRT engines; add --tensorrt")
    trt = None
    if options.tensorrt:
        from slimrt.exporters.tensorrt import require_tensorrt

        trt = require_tensorrt()
    _check_target(target, options.force)
    emit = hook or (lambda event, root: None)

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, arch_override=options.arch)
    specs = select_subnets(ckpt.subnets, options.subnets)
    net = ckpt.dynamic_net().eval()
    real, source = _real_inputs(ckpt, options)
    real_in, rand_in = make_validation_inputs(tuple(ckpt.input_shape), real, options.random_samples, options.seed)
    example = torch.randn(1, *ckpt.input_shape, generator=torch.Generator().manual_seed(options.seed))

    with staged_dir(target, replace=options.force) as tmp, _progress(console) as progress:
        (tmp / "subnets").mkdir()
        store = WeightStore({k: p.detach().cpu().numpy() for k, p in net.model.named_parameters()})
        store.write(tmp / WEIGHTS_PATH)
        emit("weights", tmp)

        task = progress.add_task("export", total=len(specs))
        exported: list[tuple[SubnetSpec, str, Any, Any]] = []
        opset = None
        out_shape: list[int | str] | None = None
        for spec in specs:
            progress.update(task, description=f"export {spec.name}")
            module = net.extract(spec)
            model = export_module(module, example, opset=options.opset, dynamic_batch=options.dynamic_batch)
            stats = store.share(model)
            if stats.inline_names:
                log.debug("%s: inline initializers %s", spec.name, stats.inline_names)
            rel = f"subnets/{spec.name}.onnx"
            (tmp / rel).write_bytes(model.SerializeToString())
            opset = opset or graph_opset(model)
            if out_shape is None:
                dims = model.graph.output[0].type.tensor_type.shape.dim
                out_shape = [d.dim_param or d.dim_value for d in dims]
            exported.append((spec, rel, stats, module))
            emit(f"onnx:{spec.name}", tmp)
            progress.advance(task)
        emit("onnx", tmp)

        progress.update(task, description="validate", completed=0)
        reports: list[SubnetReport] = []
        for spec, rel, stats, _module in exported:
            v = validate_subnet(spec.name, tmp / rel, _reference(net, spec), real_in, rand_in, options.atol)
            reports.append(SubnetReport(
                name=spec.name, macs=spec.macs, params=spec.params, test_accuracy=spec.test_accuracy,
                onnx_bytes=(tmp / rel).stat().st_size, max_abs_diff=v.max_abs_diff,
                max_abs_diff_real=v.max_abs_diff_real, max_abs_diff_random=v.max_abs_diff_random,
                argmax_agreement=v.argmax_agreement, ok=v.ok, shared_tensors=stats.full + stats.prefix,
                sliced_tensors=stats.sliced, inline_tensors=stats.inline, inline_bytes=stats.inline_bytes,
            ))  # fmt: skip
            if console is not None:
                mark = "[green]ok[/]" if v.ok else "[bold red]MISMATCH[/]"
                line = f"  {spec.name:<16} {mark}  max abs diff {v.max_abs_diff:.2e} (atol {options.atol:g})"
                progress.console.print(line)
            progress.advance(task)
        emit("validated", tmp)
        bad = [r for r in reports if not r.ok]
        if bad and not options.allow_mismatch:
            worst = ", ".join(f"{r.name} {r.max_abs_diff:.3g}" for r in bad)
            raise ValidationMismatchError(
                f"{len(bad)} sub-net(s) differ from PyTorch by more than atol={options.atol:g} ({worst}); nothing was "
                "written. Check the model, raise --atol, or pass --allow-mismatch to keep the artifact anyway"
            )

        programs: dict[str, FileRef] = {}
        if options.torch_programs:
            from slimrt.exporters.torch_program import save_program

            progress.update(task, description="torch.export", completed=0)
            for spec, _rel, _stats, module in exported:
                prel = f"torch/{spec.name}.pt2"
                save_program(module, example, tmp / prel, dynamic_batch=options.dynamic_batch)
                programs[spec.name] = _file_ref(tmp, prel)
                progress.advance(task)

        image = ckpt.extra.get("image_folder")  # class names and preprocessing of an image-folder model
        batch: int | str = "batch" if options.dynamic_batch else 1
        c = list(ckpt.input_shape)
        assert opset is not None and out_shape is not None
        table = _latency_table(ckpt)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            producer=_versions(),
            arch=ckpt.arch_override or ckpt.arch,
            opset=opset,
            dynamic_batch=options.dynamic_batch,
            input=TensorSpec(name=INPUT_NAME, shape=[batch, *c], dtype="float32", layout="NCHW",
                             mean=list(ckpt.mean), std=list(ckpt.std), preprocess=_preprocess(image)),
            output=TensorSpec(name=OUTPUT_NAME, shape=[batch, *out_shape[1:]], dtype="float32"),
            weights=_file_ref(tmp, WEIGHTS_PATH),
            subnets=[
                SubnetEntry(**spec.model_dump(), onnx=_file_ref(tmp, rel), torch_program=programs.get(spec.name),
                            max_abs_diff=rep.max_abs_diff,
                            predicted_latency_ms=None if table is None else table.predict_ms(net.widths(spec)))
                for (spec, rel, _s, _m), rep in zip(exported, reports, strict=True)
            ],
            latency_table=table,
            labels=[str(v) for v in image["classes"]] if image and image.get("classes") else None,
        )
        write_manifest(tmp, manifest)
        engines = None
        if trt is not None:
            engines = _build_engines(trt, tmp, manifest, options, progress)
        emit("manifest", tmp)
        verify_artifact(tmp)
        total = dir_bytes(tmp)
        _check_target(target, options.force)  # again: something may have appeared there meanwhile

    log.info("exported %d sub-net(s) to %s (%d bytes)", len(reports), target, total)
    return ExportResult(
        artifact=str(target), ok=not bad, opset=opset, dynamic_batch=options.dynamic_batch, atol=options.atol,
        validation_inputs=source, weights_bytes=store.nbytes, total_bytes=total, subnets=reports,
        torch_programs=options.torch_programs, engines=engines, seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------------- TensorRT


def _build_engines(trt: Any, root: Path, manifest: Manifest, options: ExportOptions, progress: Any) -> EngineSet:
    """Build ``engines/<device-tag>/`` inside ``root`` and record the EngineSet in its manifest."""
    from slimrt.artifact import write_manifest
    from slimrt.exporters.tensorrt import EngineBuildOptions, build_engine, device_tag, serialize_cache

    tag, gpu = device_tag(trt)
    final = root / "engines" / tag
    with staged_dir(final, replace=True) as work:
        cache = None
        built: list[tuple[str, bool]] = []
        bopts = EngineBuildOptions(fp16=options.fp16)
        task = progress.add_task("tensorrt", total=len(manifest.subnets))
        for s in manifest.subnets:
            progress.update(task, description=f"tensorrt {s.name}")
            cache, stripped = build_engine(trt, root / s.onnx.path, work / f"{s.name}.plan", cache, bopts)
            built.append((s.name, stripped))
            progress.advance(task)
        if cache is not None:
            atomic_write_bytes(work / "timing.cache", serialize_cache(cache))
    engines = [
        EngineRef(subnet=name, path=f"engines/{tag}/{name}.plan", sha256=sha256_file(final / f"{name}.plan"),
                  weight_stripped=stripped)
        for name, stripped in built
    ]
    cache_ref = _file_ref(root, f"engines/{tag}/timing.cache") if (final / "timing.cache").exists() else None
    es = EngineSet(device_tag=tag, tensorrt_version=str(trt.__version__), gpu_name=gpu,
                   precision="fp16" if options.fp16 else "fp32", timing_cache=cache_ref, engines=engines)
    others = [e for e in manifest.engines if e.device_tag != tag]
    write_manifest(root, manifest.model_copy(update={"engines": [*others, es]}))
    return es


def add_engines(
    artifact: str | Path, options: ExportOptions | None = None, *, console: Console | None = None
) -> EngineSet:
    """``--engines-only``: build TensorRT engines for an existing artifact on this device and record them."""
    from slimrt.artifact import verify_artifact
    from slimrt.exporters.tensorrt import require_tensorrt

    options = options or ExportOptions(tensorrt=True)
    trt = require_tensorrt()
    root = Path(artifact)
    manifest = verify_artifact(root)
    with _progress(console) as progress:
        es = _build_engines(trt, root, manifest, options, progress)
    verify_artifact(root)
    return es


def _latency_table(ckpt: Checkpoint) -> LatencyTable | None:
    """The latency table the search used (``extra["latency_table"]`` of the checkpoint), if any."""
    raw = ckpt.extra.get("latency_table")
    return None if raw is None else LatencyTable.model_validate(raw)
