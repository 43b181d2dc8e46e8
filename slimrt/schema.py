"""The data types that cross slimrt's stage boundaries (pydantic, no torch).

Search yields :class:`SubnetSpec`; export writes a :class:`Manifest`; bench writes a
:class:`LatencyProfile` measured with a :class:`DeviceProfile`; the runtime reads only manifest and
latency profiles.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "SubnetSpec",
    "FileRef",
    "TensorSpec",
    "Producer",
    "EngineRef",
    "EngineSet",
    "SubnetEntry",
    "LatencyRef",
    "Manifest",
    "DeviceProfile",
    "DeviceFingerprint",
    "ThreadLatency",
    "SubnetLatency",
    "LatencyProfile",
    "LatencyPart",
    "LatencyLayer",
    "LatencyTable",
    "safe_relpath",
    "sha256_file",
    "check_schema_version",
    "MAX_SUBNETS",
    "DTYPES",
]

SCHEMA_VERSION = 1
"""Version of the manifest / latency-profile format this slimrt reads and writes."""

MAX_SUBNETS = 64
"""Most sub-nets one manifest may list (each opens an inference session)."""

DTYPES = ("float32", "float16")
"""Input / output element types an artifact may declare (what the exporters write and the runtime feeds)."""


def check_schema_version(v: object) -> int:
    """``v`` if it is the integer :data:`SCHEMA_VERSION`, else ValueError saying what was found."""
    if type(v) is not int:
        found = "missing" if v is None else f"{type(v).__name__} {v!r}"
        raise ValueError(
            f"schema_version must be the integer {SCHEMA_VERSION}, found {found} (re-export the artifact)"
        )
    if v != SCHEMA_VERSION:
        raise ValueError(
            f"unknown schema version {v} (this slimrt reads {SCHEMA_VERSION}); upgrade slimrt or re-export the artifact"
        )
    return v


def _finite(v: float | None, what: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    return v


def safe_relpath(path: str) -> str:
    """Return ``path`` if it is a relative POSIX path that stays inside its root, else raise ValueError."""
    if not path or "\\" in path or "\x00" in path:
        raise ValueError(f"path {path!r} must be a non-empty relative POSIX path")
    p = PurePosixPath(path)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or path.startswith("~"):
        raise ValueError(f"path {path!r} must stay inside the artifact (no '..', no absolute paths)")
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


RelPath = Annotated[str, AfterValidator(safe_relpath)]
"""A path inside the artifact (checked by :func:`safe_relpath`)."""

SchemaVersion = Annotated[int, BeforeValidator(check_schema_version)]
"""``schema_version`` of a manifest or latency profile (checked by :func:`check_schema_version`)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubnetSpec(_Frozen):
    """One nested sub-net: kept channels per channel group, its cost and (once known) accuracy.

    Accuracies are in percent.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    widths: dict[str, int]
    macs: int = Field(ge=0)
    params: int = Field(ge=0)
    val_accuracy: float | None = None
    test_accuracy: float | None = None

    @field_validator("val_accuracy", "test_accuracy")
    @classmethod
    def _finite_accuracy(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and 0 <= v <= 100):
            raise ValueError(f"accuracy must be a finite percentage in [0, 100], got {v}")
        return v

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: w for k, w in v.items() if w < 1}
        if bad:
            raise ValueError(f"every kept width must be >= 1, got {bad}")
        return v

    def with_accuracy(self, *, val: float | None = None, test: float | None = None) -> SubnetSpec:
        """Copy with accuracies set (None keeps the current value)."""
        return self.model_copy(
            update={
                "val_accuracy": self.val_accuracy if val is None else float(val),
                "test_accuracy": self.test_accuracy if test is None else float(test),
            }
        )

    def nested_in(self, other: SubnetSpec) -> bool:
        """True when every group of ``self`` keeps no more channels than ``other`` (a missing group is full)."""
        groups = set(self.widths) | set(other.widths)
        inf = float("inf")
        return all(self.widths.get(g, inf) <= other.widths.get(g, inf) for g in groups)


class FileRef(_Frozen):
    """A file inside an artifact, with its size and checksum."""

    path: RelPath
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int | None = Field(default=None, ge=0)


class TensorSpec(_Frozen):
    """Name, shape (ints, or strings for symbolic dims), dtype and layout of a model input/output.

    ``mean``/``std`` normalize [0, 1] pixels; ``preprocess`` documents how image files became this tensor when the
    model was trained on an image folder (``input_size``, ``grayscale``, ``resize``, ``crop_fraction``,
    ``train_augmentation``): JSON values, informative only.
    """

    name: str = Field(min_length=1)
    shape: list[int | str] = Field(min_length=1, max_length=8)
    dtype: Literal["float32", "float16"] = "float32"
    layout: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    preprocess: dict[str, Any] | None = None

    @field_validator("shape")
    @classmethod
    def _positive_dims(cls, v: list[int | str]) -> list[int | str]:
        bad = [d for d in v if (isinstance(d, int) and d < 1) or (isinstance(d, str) and not d)]
        if bad:
            raise ValueError(f"every dimension must be a positive int or a symbol name, got {v}")
        return v

    @field_validator("mean", "std")
    @classmethod
    def _finite_stats(cls, v: list[float] | None) -> list[float] | None:
        for x in v or []:
            _finite(x, "mean/std")
        return v


class Producer(_Frozen):
    slimrt: str
    torch: str | None = None
    onnx: str | None = None
    onnxruntime: str | None = None


class EngineRef(_Frozen):
    """A TensorRT engine (plan) for one sub-net."""

    subnet: str
    path: RelPath
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weight_stripped: bool = False


class EngineSet(_Frozen):
    """TensorRT engines built on one device (engines are not portable across GPUs / versions)."""

    device_tag: str
    tensorrt_version: str
    gpu_name: str
    precision: Literal["fp32", "fp16"] = "fp32"
    timing_cache: FileRef | None = None
    engines: list[EngineRef]


class SubnetEntry(SubnetSpec):
    """A sub-net in a manifest: its spec plus the files that run it and its export validation error."""

    onnx: FileRef
    torch_program: FileRef | None = None
    max_abs_diff: float | None = Field(default=None, ge=0)
    predicted_latency_ms: float | None = Field(default=None, gt=0, description="from the artifact's latency table")

    @field_validator("max_abs_diff")
    @classmethod
    def _finite_diff(cls, v: float | None) -> float | None:
        return _finite(v, "max_abs_diff")

    def spec(self) -> SubnetSpec:
        return SubnetSpec(**self.model_dump(include=set(SubnetSpec.model_fields)))


class LatencyRef(_Frozen):
    """A stored latency profile inside the artifact (``latency/<fingerprint>.json``)."""

    fingerprint: str
    device: str
    backend: str
    path: RelPath
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(_Frozen):
    """``manifest.json`` of a slimrt artifact. Sub-nets are listed largest first."""

    schema_version: SchemaVersion
    producer: Producer
    arch: str | None = None
    opset: int | None = None
    dynamic_batch: bool = False
    input: TensorSpec
    output: TensorSpec
    weights: FileRef
    subnets: list[SubnetEntry] = Field(min_length=1, max_length=MAX_SUBNETS)
    latency: list[LatencyRef] = Field(default_factory=list, max_length=256)
    engines: list[EngineSet] = Field(default_factory=list, max_length=64)
    latency_table: LatencyTable | None = None
    labels: list[str] | None = Field(default=None, max_length=100_000,
                                     description="class names: output index i is labels[i] (image folders)")

    @model_validator(mode="after")
    def _unique_names(self) -> Manifest:
        names = [s.name for s in self.subnets]
        if len(set(names)) != len(names):
            raise ValueError(f"sub-net names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _labels_fit_output(self) -> Manifest:
        if self.labels is None:
            return self
        last = self.output.shape[-1]
        if isinstance(last, int) and len(self.labels) != last:
            raise ValueError(f"labels name {len(self.labels)} classes but the output has {last}")
        return self

    def subnet(self, name: str) -> SubnetEntry:
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(f"no sub-net {name!r}; the artifact has {[s.name for s in self.subnets]}")


class DeviceProfile(_Frozen):
    """How to measure latency on one kind of device (``profiles/<name>.toml``)."""

    name: str
    description: str = ""
    device: Literal["cpu", "cuda", "jetson"]
    backend: Literal["onnxruntime", "tensorrt", "torch", "auto"] = "onnxruntime"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    fallback_backend: Literal["onnxruntime", "tensorrt", "torch"] | None = None
    precision: Literal["fp32", "fp16"] = "fp32"
    threads: int | None = Field(default=None, ge=1)
    warmup: int = Field(default=20, ge=0)
    runs: int = Field(default=200, ge=5)
    duration_s: float | None = Field(default=None, gt=0)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99])
    noisy_cv: float = Field(default=0.25, gt=0)
    checks: list[Literal["cuda_available", "tensorrt_available", "jetson_power_mode", "jetson_clocks"]] = Field(
        default_factory=list
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError(f"batch sizes must be >= 1, got {v}")
        return v

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, v: list[float]) -> list[float]:
        if not v or any(not (0 < q < 1) for q in v):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {v}")
        return sorted(v)


class DeviceFingerprint(_Frozen):
    """What identifies a device for latency purposes."""

    cpu_model: str
    cpu_cores: int
    threads: int | None = None
    gpu_name: str | None = None
    gpu_driver: str | None = None
    onnxruntime: str | None = None
    tensorrt: str | None = None
    torch: str | None = None
    power_mode: str | None = None
    backend: str
    providers: list[str] = Field(default_factory=list)
    precision: str = "fp32"
    batch_size: int = 1

    def id(self) -> str:
        """Short stable id (hex) of this fingerprint, used as the profile's file name."""
        data = self.model_dump_json().encode()
        return hashlib.sha256(data).hexdigest()[:16]


class SubnetLatency(_Frozen):
    """Latency statistics of one sub-net, in milliseconds."""

    name: str
    p50_ms: float = Field(gt=0)
    p90_ms: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)
    mean_ms: float = Field(gt=0)
    cv: float = Field(ge=0)
    runs: int = Field(ge=1)

    @model_validator(mode="after")
    def _monotone(self) -> SubnetLatency:
        qs = [self.p50_ms, self.p90_ms, self.p95_ms, self.p99_ms]
        if not (math.isfinite(self.mean_ms) and math.isfinite(self.cv)):
            raise ValueError(f"mean_ms and cv must be finite, got {self.mean_ms}, {self.cv}")
        if any(not math.isfinite(q) for q in qs) or qs != sorted(qs):
            raise ValueError(f"latency quantiles must be finite and non-decreasing, got {qs}")
        return self

    def quantile_ms(self, q: float) -> float:
        """Latency at quantile ``q`` (0 < q < 1), linearly interpolated between stored quantiles.

        Below 0.5 returns p50; above 0.99 returns p99.
        """
        pts = [(0.5, self.p50_ms), (0.9, self.p90_ms), (0.95, self.p95_ms), (0.99, self.p99_ms)]
        if not (0 < q < 1) or math.isnan(q):
            raise ValueError(f"quantile must lie strictly between 0 and 1, got {q}")
        if q <= pts[0][0]:
            return pts[0][1]
        for (q0, v0), (q1, v1) in zip(pts, pts[1:], strict=False):
            if q <= q1:
                return v0 + (v1 - v0) * (q - q0) / (q1 - q0)
        return pts[-1][1]


class ThreadLatency(_Frozen):
    """Latency of every sub-net served with ``threads`` intra-op threads: one extra thread count of a profile."""

    threads: int = Field(ge=1)
    subnets: list[SubnetLatency] = Field(min_length=1, max_length=MAX_SUBNETS)


class LatencyProfile(_Frozen):
    """Measured latency of every sub-net of an artifact on one device, for one backend and batch size.

    ``subnets`` is measured at the fingerprint's thread count; ``thread_variants`` (optional, CPU backends) holds
    the same sub-nets measured at other thread counts, so the runtime can trade threads for latency. Profiles
    written before thread variants existed have none and load unchanged.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    device: str
    fingerprint: DeviceFingerprint
    batch_size: int = Field(default=1, ge=1)
    created: str
    noisy: bool = False
    subnets: list[SubnetLatency] = Field(min_length=1, max_length=MAX_SUBNETS)
    thread_variants: list[ThreadLatency] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _distinct_threads(self) -> LatencyProfile:
        ts = [v.threads for v in self.thread_variants]
        if len(set(ts)) != len(ts) or self.fingerprint.threads in ts:
            raise ValueError(f"thread variants must be distinct and differ from the fingerprint's threads "
                             f"({self.fingerprint.threads}), got {ts}")
        return self

    @property
    def fingerprint_id(self) -> str:
        return self.fingerprint.id()

    @property
    def thread_counts(self) -> list[int | None]:
        """The fingerprint's thread count (None: the backend's default) then every thread variant's."""
        return [self.fingerprint.threads, *(v.threads for v in self.thread_variants)]

    def latency(self, name: str, threads: int | None = None) -> SubnetLatency:
        """Latency of sub-net ``name`` at the fingerprint's thread count, or at the variant ``threads``."""
        subnets = self.subnets
        if threads is not None and threads != self.fingerprint.threads:
            v = next((v for v in self.thread_variants if v.threads == threads), None)
            if v is None:
                raise KeyError(f"latency profile has no thread variant {threads} (has {self.thread_counts})")
            subnets = v.subnets
        for s in subnets:
            if s.name == name:
                return s
        raise KeyError(f"latency profile has no sub-net {name!r}")


# ------------------------------------------------------------------------------------------------ latency tables


def _interp(grid: list[int], v: float) -> tuple[int, int, float]:
    """Indices ``(i, j)`` of the grid points around ``v`` and the weight of ``j`` (clamped linear extrapolation
    below the first point: latency is not extrapolated above the grid)."""
    if len(grid) == 1:
        return 0, 0, 0.0
    for k in range(1, len(grid)):
        if v <= grid[k] or k == len(grid) - 1:
            i, j = k - 1, k
            t = (v - grid[i]) / (grid[j] - grid[i])
            return i, j, min(max(t, 0.0), 1.0)
    raise AssertionError("unreachable")


class LatencyPart(_Frozen):
    """Measured latency of one kind of layer (conv + BN + activation as exported, or a linear layer) over a grid of
    input and output channel counts; ``ms[i][j]`` is at ``in_grid[i]`` inputs and ``out_grid[j]`` outputs, with the
    per-call overhead already subtracted (may be slightly negative for tiny layers under noise)."""

    key: str = Field(description="the layer's shape signature (kind, kernel, stride, groups, input size, full widths)")
    in_grid: list[int] = Field(min_length=1)
    out_grid: list[int] = Field(min_length=1)
    ms: list[list[float]]

    @model_validator(mode="after")
    def _shape(self) -> LatencyPart:
        if self.in_grid != sorted(set(self.in_grid)) or self.out_grid != sorted(set(self.out_grid)):
            raise ValueError("latency table grids must be strictly increasing")
        if len(self.ms) != len(self.in_grid) or any(len(r) != len(self.out_grid) for r in self.ms):
            raise ValueError(f"part {self.key}: ms must be {len(self.in_grid)} x {len(self.out_grid)}")
        if any(not math.isfinite(v) for r in self.ms for v in r):
            raise ValueError(f"part {self.key}: latencies must be finite")
        return self

    def at(self, n_in: float, n_out: float) -> float:
        """Bilinear interpolation between the grid points around ``(n_in, n_out)``."""
        i0, i1, ti = _interp(self.in_grid, n_in)
        j0, j1, tj = _interp(self.out_grid, n_out)
        m = self.ms
        top = m[i0][j0] * (1 - tj) + m[i0][j1] * tj
        bottom = m[i1][j0] * (1 - tj) + m[i1][j1] * tj
        return top * (1 - ti) + bottom * ti


class LatencyLayer(_Frozen):
    """One layer of the network: which part measures it and which channel groups set its input and output counts.

    ``inputs`` / ``outputs`` are ``[group, full channels]`` segments (several after a concat); a layer's channel
    count is the sum of its segments' kept widths (``in_repeat`` times for a linear layer after a flatten).
    """

    name: str
    part: str
    inputs: list[tuple[str, int]]
    outputs: list[tuple[str, int]]
    in_repeat: int = Field(default=1, ge=1)
    depthwise: bool = False


class LatencyTable(_Frozen):
    """Per-layer latency lookup table of one network on one device (see ``slimrt latency-table``).

    A sub-net's predicted latency is ``fixed_ms + other_ms + scale * sum over layers of part.at(n_in, n_out)``:
    ``fixed_ms`` is the cost of a call (a trivial model on the network's input). Layers timed alone and layers run
    inside the whole network differ (thread hand-offs, cache, additions and pooling the parts do not include), so
    ``other_ms`` and ``scale`` are calibrated on two end-to-end measurements, the full network and the smallest
    sub-net (every group at one unit); with only the full network, ``scale`` stays 1 and ``other_ms`` takes the gap.

    Channel alignment (``align``, ``aligned_scale``): ONNX Runtime's CPU kernels run convolutions whose channel
    counts are multiples of the SIMD block in a blocked layout, and a whole network of such layers pays its layout
    conversions once, where a layer timed alone pays them every time. When fitted on whole networks measured on the
    device (:func:`slimrt.bench.layers.fit_alignment`), layers whose input and output counts are both multiples of
    ``align`` are scaled by ``aligned_scale`` and the others by ``scale``; ``fit`` records how (networks, errors).

    Stage scales (``stage_scales``): the layers of one resolution stage share their activations' size and layout
    conversions, which a layer timed alone does not see; fitted on whole networks measured end to end
    (``benchmarks/latency_stage_fit.py``), one scale per input resolution replaces ``scale`` and ``aligned_scale``.

    Plain-layout convolutions (``layout_block``, ``plain_factor``): ONNX Runtime's CPU optimizer keeps a convolution
    out of the blocked layout when its input channel count is at least the block (8 floats with AVX2, 16 with
    AVX-512) and not a multiple of 4 (depthwise: when its channel count is not a multiple of 4), whatever its
    neighbours. Such a layer runs as a plain im2col convolution, which the grid (multiples of a unit of 4 or more
    channels) never measures and interpolation underestimates. ``layout_block`` is what the device's ONNX Runtime
    does (probed with one-layer models, :func:`slimrt.bench.layers.probe_layout_block`; None: no convolution runs
    plain there), and ``plain_factor`` multiplies those layers' entries, calibrated on a whole network of them.
    """

    schema_version: int = SCHEMA_VERSION
    kind: Literal["latency-table"] = "latency-table"
    device: str
    fingerprint: DeviceFingerprint
    batch_size: int = Field(default=1, ge=1)
    created: str
    input_shape: list[int]
    groups: dict[str, int] = Field(description="full channels of every channel group the layers use")
    fixed_ms: float
    other_ms: float = 0.0
    scale: float = Field(default=1.0, gt=0)
    align: int | None = Field(default=None, ge=1, description="channel multiple that runs in the blocked layout")
    aligned_scale: float | None = Field(default=None, gt=0, description="scale of layers aligned on both sides")
    fit: dict[str, float | int | str] | None = None
    layout_block: int | None = Field(default=None, ge=2, description="input channels from which convolutions "
                                     "that are not multiples of 4 run in the plain layout (None: none do)")
    plain_factor: float | None = Field(default=None, gt=0, description="multiplier of plain-layout layers' entries")
    stage_scales: dict[str, float] | None = Field(
        default=None, description="one scale per input resolution of the layers ('28x28'; a linear layer counts "
        "with the smallest), fitted on whole networks; replaces scale and aligned_scale when set")
    plain_measured_ms: float | None = Field(default=None, gt=0)
    plain_widths: dict[str, int] | None = None
    full_measured_ms: float | None = Field(default=None, gt=0)
    small_measured_ms: float | None = Field(default=None, gt=0)
    small_widths: dict[str, int] | None = None
    parts: list[LatencyPart] = Field(min_length=1)
    layers: list[LatencyLayer] = Field(min_length=1)
    measurements: int = Field(default=0, ge=0)
    warmup: int = Field(default=0, ge=0)
    runs: int = Field(default=0, ge=0)
    load_avg: list[float] | None = None

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, v: object) -> int:
        return check_schema_version(v)

    @model_validator(mode="after")
    def _parts_known(self) -> LatencyTable:
        keys = {p.key for p in self.parts}
        if self.stage_scales is not None:
            stages = self.stages()
            if not stages:
                raise ValueError("stage_scales need layers with a spatial input (a part key with @HxW)")
            if set(self.stage_scales) != set(stages):
                raise ValueError(f"stage_scales must name the stages {stages}, got {sorted(self.stage_scales)}")
            if not all(math.isfinite(v) and v > 0 for v in self.stage_scales.values()):
                raise ValueError("stage_scales must be positive")
        for layer in self.layers:
            if layer.part not in keys:
                raise ValueError(f"layer {layer.name!r} refers to unknown part {layer.part!r}")
            for g, _ in layer.inputs + layer.outputs:
                if g not in self.groups:
                    raise ValueError(f"layer {layer.name!r} uses group {g!r} missing from groups")
        return self

    @property
    def fingerprint_id(self) -> str:
        return self.fingerprint.id()

    def part(self, key: str) -> LatencyPart:
        for p in self.parts:
            if p.key == key:
                return p
        raise KeyError(f"latency table has no part {key!r}")

    def layer_channels(self, widths: dict[str, int]) -> dict[str, tuple[int, int]]:
        """``(n_in, n_out)`` of every layer for the kept ``widths`` (groups not named keep their full width)."""
        out: dict[str, tuple[int, int]] = {}
        for layer in self.layers:
            n_in = sum(min(widths.get(g, c), c) for g, c in layer.inputs) * layer.in_repeat
            n_out = sum(min(widths.get(g, c), c) for g, c in layer.outputs)
            out[layer.name] = (n_out if layer.depthwise else n_in, n_out)
        return out

    def layer_ms(self, widths: dict[str, int]) -> dict[str, float]:
        """Measured latency of every layer alone (unscaled) for the kept ``widths``."""
        return {name: ms for name, ms, _ in self._layer_terms(widths)}

    def _layer_terms(self, widths: dict[str, int]) -> list[tuple[str, float, tuple[int, int]]]:
        """``(name, unscaled ms, (n_in, n_out))`` of every layer: the channel counts are worked out once."""
        parts = {p.key: p for p in self.parts}
        chans = self.layer_channels(widths)
        return [(la.name, parts[la.part].at(*chans[la.name]), chans[la.name]) for la in self.layers]

    def plain_layers(self, widths: dict[str, int]) -> list[str]:
        """Convolutions that run in the plain layout for the kept ``widths`` (see the class docstring)."""
        if self.layout_block is None:
            return []
        chans = self.layer_channels(widths)  # parts are keyed by kind first: "conv...", "convdw...", "linear..."
        return [la.name for la in self.layers
                if la.part.startswith("conv") and plain_layout(*chans[la.name], la.depthwise, self.layout_block)]

    def split3_ms(self, widths: dict[str, int], align: int | None = None) -> tuple[float, float, float]:
        """Unscaled layer sums ``(aligned, other, plain)``: plain-layout layers (:meth:`plain_layers`), then
        layers whose input and output counts are both multiples of ``align`` (default: the table's; 0 or none:
        none), then the rest. ``plain_factor`` is not applied."""
        a = align if align is not None else self.align
        plain_names = set(self.plain_layers(widths))
        aligned = other = plain = 0.0
        for name, ms, (i, o) in self._layer_terms(widths):
            if name in plain_names:
                plain += ms
            elif a and i % a == 0 and o % a == 0:
                aligned += ms
            else:
                other += ms
        return aligned, other, plain

    def split_ms(self, widths: dict[str, int], align: int | None = None) -> tuple[float, float]:
        """Layer sums ``(aligned, other)`` before the scales, as :meth:`split3_ms` with the plain-layout layers
        counted as other, multiplied by ``plain_factor`` (1 without one)."""
        aligned, other, plain = self.split3_ms(widths, align)
        return aligned, other + (self.plain_factor or 1.0) * plain

    def stages(self) -> list[str]:
        """The input resolutions of the layers' parts (:func:`part_stage`), largest first."""
        found = {part_stage(la.part) for la in self.layers} - {None}
        return sorted(found, key=lambda st: (-math.prod(int(v) for v in st.split("x")), st))

    def stage_ms(self, widths: dict[str, int]) -> dict[str, float]:
        """Per :meth:`stages` entry, the sum of its layers' entries (plain-layout ones times ``plain_factor``); a
        layer without a spatial input (linear) counts with the smallest stage."""
        stages = self.stages()
        plain = set(self.plain_layers(widths))
        part_of = {la.name: la.part for la in self.layers}
        sums = dict.fromkeys(stages, 0.0)
        for name, ms, _ in self._layer_terms(widths):
            st = part_stage(part_of[name]) or stages[-1]
            sums[st] += ms * ((self.plain_factor or 1.0) if name in plain else 1.0)
        return sums

    def predict_ms(self, widths: dict[str, int]) -> float:
        """Predicted latency (ms) of the sub-net keeping ``widths``: fixed + other + its scaled layers."""
        if self.stage_scales is not None:
            return self.fixed_ms + self.other_ms + sum(self.stage_scales[st] * ms
                                                       for st, ms in self.stage_ms(widths).items())
        if self.align is None or self.aligned_scale is None:
            aligned, rest = self.split_ms(widths, 0)
            return self.fixed_ms + self.other_ms + self.scale * (aligned + rest)
        aligned, rest = self.split_ms(widths)
        return self.fixed_ms + self.other_ms + self.aligned_scale * aligned + self.scale * rest


def part_stage(part_key: str) -> str | None:
    """The input resolution in a part's key (``conv3x3s1p1-16x16@28x28-g4x4`` -> ``28x28``); None without one."""
    if "@" not in part_key:
        return None
    stage = part_key.split("@", 1)[1].split("-", 1)[0]
    dims = stage.split("x")
    return stage if dims and all(d.isdigit() for d in dims) else None


def plain_layout(n_in: int, n_out: int, depthwise: bool, block: int) -> bool:
    """Whether ONNX Runtime's CPU optimizer (NCHWc transformer, block ``block``) leaves a convolution with these
    channel counts in the plain layout: input counts from ``block`` up that are not multiples of 4 (depthwise:
    channel counts above 1 that are not), the multiple its layout reorder needs (``ReorderInput``)."""
    if depthwise:
        return n_out > 1 and n_out % 4 != 0
    return n_in >= block and n_in % 4 != 0

Manifest.model_rebuild()
