"""``SearchConfig``: every knob of ``slimrt train`` as one field the code reads (TOML file, overridden by flags).

Learning-rate schedule: each training phase (pre-training, the short fine-tunes inside the search, the final joint
fine-tuning) runs SGD with Nesterov momentum and a cosine decay to zero over the phase, after a linear warm-up of
``warmup_epochs`` (pre-training only).

Fine-tuning threshold: during the search a candidate triggers a short joint fine-tune (``finetune_steps`` steps)
when its validation accuracy falls more than ``threshold`` points below its predecessor's. ``finetune_always``
(ablation) fine-tunes after every candidate whatever the drop; ``threshold = inf`` or ``finetune_steps = 0`` never
fine-tunes during the search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slimrt.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["SearchConfig", "SearchSteps", "Method", "Ranking", "check_out_path", "AUTO_EPOCHS"]

Method = Literal["progressive", "usnet", "independent"]
Ranking = Literal["noise", "l1", "bn", "random"]


DEFAULT_NOISE_STEPS = 100
DEFAULT_FINETUNE_STEPS = 100
DEFAULT_CALIB_BATCHES = 20
AUTO_EPOCHS = 2
"""Unset noise / fine-tune step counts are capped at this many epochs of the training images."""
AUTO_MIN_NOISE_STEPS = 20
AUTO_MIN_FINETUNE_STEPS = 10


class SearchSteps(BaseModel):
    """Step counts of the progressive search for one run, resolved from the config and the data size.

    A count given in the config (or by its flag) is used as given. An unset one is its default (noise 100, fine-tune
    100, calibration 20 batches) capped at :data:`AUTO_EPOCHS` epochs' worth of the training images, with a floor
    (noise 20, fine-tune 10): on 200 images a candidate trains its noise scales for 20 steps, not 100 (~30 epochs).
    From 6,400 training images at the default batch sizes (128, noise 64) the defaults apply unchanged. Calibration
    never reads more than one pass over the training images, given or not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_steps: int
    finetune_steps: int
    calib_batches: int
    train_images: int
    auto: list[str] = Field(default_factory=list, description="the counts scaled to the data (not given)")

    def describe(self) -> str:
        """One line for logs: the counts, each marked given or scaled to the data."""
        def one(name: str, v: int) -> str:
            return f"{name} {v}" + (" (auto)" if name in self.auto else "")

        return (f"search steps for {self.train_images:,} training images: {one('noise_steps', self.noise_steps)}, "
                f"{one('finetune_steps', self.finetune_steps)}, {one('calib_batches', self.calib_batches)}")


class SearchConfig(BaseModel):
    """Configuration of a training run (``slimrt train``); accuracies and thresholds are in percent points."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- what to train on
    arch: str = Field("resnet20", description="registry name or package.module:factory")
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, description="options forwarded to the model factory")
    dataset: str = Field("fashion-mnist", description="'fashion-mnist', 'synthetic[-CxHxW]' or an .npz path")
    data_dir: str | None = Field(None, description="folder holding the Fashion-MNIST files")
    method: Method = "progressive"
    limit_train: int | None = Field(None, ge=1, description="use only the first N training images")
    val_size: int | None = Field(None, ge=1, description="validation images carved from the training set")
    input_size: int | None = Field(None, ge=1, description="image folders: side of the square input (resize + "
                                   "center-crop); None: the first image's shorter side, at most 224")
    grayscale: bool | None = Field(None, description="image folders: one channel; None: as the first image is")
    mean: list[float] | None = Field(None, description="image folders: per-channel mean of [0, 1] pixels; "
                                     "None: computed from the training images")
    std: list[float] | None = Field(None, description="image folders: per-channel std; None: computed")
    skip_bad_images: bool = Field(False, description="image folders: skip unreadable images (counted) instead of "
                                  "stopping")
    crop_scale: list[float] | None = Field(None, description="image folders: training random-resized-crop area "
                                           "range (min, max) as fractions of the image; None: 0.08, 1")
    crop_ratio: list[float] | None = Field(None, description="image folders: training random-resized-crop aspect "
                                           "ratio range (min, max); None: 3/4, 4/3")
    workers: int | None = Field(None, ge=1, description="image folders: decoding threads; None: min(4, CPUs)")

    # --- optimisation
    pretrain_epochs: int = Field(30, ge=0, description="epochs of full-network pre-training")
    epochs: int = Field(10, ge=0, description="epochs of final joint fine-tuning of the K sub-nets")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    lr: float = Field(0.1, gt=0, description="peak learning rate of pre-training")
    finetune_lr: float = Field(0.03, gt=0, description="peak learning rate of the final joint fine-tuning")
    step_finetune_lr: float = Field(0.01, gt=0, description="learning rate of the short fine-tunes in the search")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up of pre-training, in epochs")
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    augment: bool = Field(True, description="augment training batches: random pad-and-crop, or random-resized-crop "
                          "for image folders, plus the horizontal flip")
    flip: bool = Field(True, description="random horizontal flips in the training augmentation (off for digits, "
                       "text, anything whose mirror image is another class)")
    channels_last: bool | None = Field(None, description="channels-last memory format; None: on for CPU")

    # --- sub-nets
    subnets: int = Field(4, ge=1, description="K, the number of final sub-nets")
    min_macs: float = Field(0.1, gt=0, le=1, description="smallest sub-net, as a fraction of the full MACs")
    macs_step: float = Field(0.05, gt=0, lt=1, description="MACs removed per search step, fraction of full")
    max_cut: float = Field(0.25, gt=0, le=1, description="never remove more than this fraction of a candidate's "
                           "MACs in one step")
    macs_targets: list[float] | None = Field(None, description="pick the final sub-nets at these MACs fractions")
    group_size: int = Field(8, ge=1, description="channels per unit (what gets ranked and removed)")
    min_units: int = Field(4, ge=1, description="groups narrower than min_units*group_size get smaller units")
    min_width: float = Field(0.0, ge=0, lt=1, description="never keep fewer than this fraction of a group")
    cost: Literal["macs", "latency"] = Field("macs", description="what the search removes per step and ranks "
                                              "against: MACs, or predicted latency from latency_table")
    latency_table: str | None = Field(None, description="latency table JSON (`slimrt latency-table`): the cost of "
                                      "cost latency, the placement of latency targets under either cost, and the "
                                      "predicted latency stored with every sub-net")
    latency_step: float = Field(0.05, gt=0, lt=1, description="cost latency: predicted ms removed per step, "
                                "fraction of the full network's predicted latency")
    min_latency: float = Field(0.2, gt=0, le=1, description="cost latency: smallest sub-net, fraction of the "
                               "full network's predicted latency (the search also stops when nothing can go)")
    latency_targets: list[float] | None = Field(None, description="pick the final sub-nets at these fractions of "
                                                "the full network's predicted latency (needs latency_table; under "
                                                "cost macs the search still ranks and steps by MACs, goes down to "
                                                "the smallest target and ignores min_macs)")
    latency_targets_ms: list[float] | None = Field(None, description="pick the final sub-nets at these predicted "
                                                   "latencies in ms (on the table's device); the search goes down "
                                                   "to the smallest of them (needs latency_table, either cost)")

    # --- ranking
    ranking: Ranking = "noise"
    noise_steps: int | None = Field(None, ge=1, description="steps of training the noise scales per candidate; "
                                    "None: 100, scaled down to 2 epochs of noise batches on small data (>= 20)")
    noise_lr: float = Field(0.05, gt=0, description="Adam learning rate of the log noise scales")
    noise_reward: float = Field(0.2, ge=0, description="lambda: weight of the MACs-weighted noise reward")
    noise_init: float = Field(0.05, gt=0, description="initial noise scale alpha of every unit")
    noise_batch_size: int = Field(64, ge=1)

    # --- search
    supernet_epochs: int = Field(0, ge=0, description="progressive: epochs of non-uniform slimmable supernet "
                                 "training (sandwich rule, independent widths per group) before the search")
    supernet_lr: float = Field(0.01, gt=0, description="peak learning rate of the supernet warm start")
    threshold: float = Field(1.0, ge=0, description="fine-tune when val accuracy drops more than this (points)")
    finetune_always: bool = Field(False, description="ablation: fine-tune after every candidate")
    finetune_steps: int | None = Field(None, ge=0, description="steps of each short joint fine-tune in the search; "
                                       "None: 100, scaled down to 2 epochs on small data (>= 10)")
    reselect: bool = Field(True, description="Pareto + spread re-selection; off: K candidates evenly by index")
    keep_full: bool = Field(False, description="re-selection always keeps the full network as the largest sub-net "
                            "(the top of the latency range), even when a smaller candidate validates as well")
    distill: bool = Field(True, description="in-place distillation from the largest sub-net")
    sampled_subnets: int = Field(2, ge=0, description="sub-nets sampled per step besides the largest and smallest")
    usnet_min_width: float = Field(0.25, ge=0.05, lt=1, description="usnet: the narrowest trained width multiplier "
                                   "(the sandwich rule's smallest sub-net); sub-nets below it are clamped to it")
    calib_batches: int | None = Field(None, ge=1, description="training batches for per-sub-net BN calibration "
                                      "(one pass over the training images at most); None: 20")
    budget_macs: int | None = Field(None, ge=1, description="progressive: training MACs (3 x forward MACs per "
                                    "trained image, ranking forwards included) the whole search may spend; the "
                                    "final joint fine-tune gets the whole epochs that fit in what the search left "
                                    "(at least one), replacing `epochs`")

    # --- run
    seed: int = 0
    device: str = Field("cpu", description="'cpu', 'cuda' or 'cuda:N'")
    out: str = Field("model.pt", min_length=1)
    init: str | None = Field(None, description="checkpoint of a trained full network (skips pre-training)")
    resume: bool = Field(False, description="continue from <out>.resume.pt when it exists")
    force: bool = Field(False, description="overwrite an existing checkpoint at out")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {v!r}")
        return v

    @field_validator("latency_targets_ms")
    @classmethod
    def _targets_ms(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or any(not (t > 0 and math.isfinite(t)) for t in v):
            raise ValueError(f"latency targets must be positive milliseconds, got {v}")
        return sorted(set(v), reverse=True)

    @field_validator("macs_targets", "latency_targets")
    @classmethod
    def _targets(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or any(not (0 < t <= 1) for t in v):
            raise ValueError(f"targets must be fractions in (0, 1], got {v}")
        return sorted(set(v), reverse=True)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: float) -> float:
        if math.isnan(v):
            raise ValueError("threshold must be a number of points (use inf to never fine-tune), not nan")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if self.macs_targets is not None and len(self.macs_targets) != self.subnets:
            raise ValueError(f"{len(self.macs_targets)} macs_targets given but subnets={self.subnets}")
        if self.latency_targets is not None and len(self.latency_targets) != self.subnets:
            raise ValueError(f"{len(self.latency_targets)} latency_targets given but subnets={self.subnets}")
        if self.cost == "latency" and self.latency_table is None:
            raise ValueError("cost 'latency' needs latency_table (a JSON file from `slimrt latency-table`)")
        if (self.cost == "latency" or self.supernet_epochs > 0) and self.method != "progressive":
            raise ValueError(f"cost 'latency' and supernet_epochs apply to method 'progressive', not {self.method!r}")
        if self.usnet_min_width != type(self).model_fields["usnet_min_width"].default and self.method != "usnet":
            raise ValueError(f"usnet_min_width applies to method 'usnet', not {self.method!r}")
        lat_targets = self.latency_targets is not None or self.latency_targets_ms is not None
        if lat_targets and self.method != "progressive":
            raise ValueError(f"latency targets apply to method 'progressive', not {self.method!r}")
        if lat_targets and self.latency_table is None:
            raise ValueError("latency targets need latency_table (a JSON file from `slimrt latency-table`) to predict "
                             "each candidate's latency")
        if lat_targets and self.macs_targets is not None:
            raise ValueError("give macs_targets or latency targets, not both")
        if self.latency_targets_ms is not None:
            if self.latency_targets is not None:
                raise ValueError("give latency_targets (fractions) or latency_targets_ms (milliseconds), not both")
            if len(self.latency_targets_ms) != self.subnets:
                raise ValueError(f"{len(self.latency_targets_ms)} latency_targets_ms given but subnets={self.subnets}")
        return self

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> SearchConfig:
        """Read a TOML file (keys = field names, optionally under a ``[train]`` table), then apply ``overrides``.

        Overrides equal to None are ignored, so CLI flags left unset keep the file's values.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        if "train" in data and isinstance(data["train"], dict):
            data = data["train"]
        return cls.build(data, overrides, source=str(path))

    @classmethod
    def build(cls, data: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
              source: str = "config") -> SearchConfig:  # fmt: skip
        """Validate ``data`` updated with the non-None ``overrides``; raise ConfigError with every problem."""
        merged = dict(data or {})
        merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return cls.model_validate(merged)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"invalid {source}: {problems}") from None

    def updated(self, **changes: Any) -> SearchConfig:
        """A validated copy with ``changes`` applied (None values ignored)."""
        return self.build(self.model_dump(), changes)

    def search_steps(self, train_images: int) -> SearchSteps:
        """The step counts the search runs on ``train_images`` images (see :class:`SearchSteps`)."""
        n = max(0, int(train_images))
        auto: list[str] = []
        noise = self.noise_steps
        if noise is None:
            noise = max(AUTO_MIN_NOISE_STEPS, min(DEFAULT_NOISE_STEPS,
                                                  math.ceil(AUTO_EPOCHS * n / self.noise_batch_size)))  # fmt: skip
            auto.append("noise_steps")
        ft = self.finetune_steps
        if ft is None:
            ft = max(AUTO_MIN_FINETUNE_STEPS, min(DEFAULT_FINETUNE_STEPS,
                                                  AUTO_EPOCHS * max(1, n // self.batch_size)))  # fmt: skip
            auto.append("finetune_steps")
        calib = self.calib_batches
        if calib is None:
            calib = DEFAULT_CALIB_BATCHES
            auto.append("calib_batches")
        calib = max(1, min(calib, math.ceil(n / self.batch_size)))  # calibration reads one pass at most
        return SearchSteps(noise_steps=noise, finetune_steps=ft, calib_batches=calib, train_images=n, auto=auto)

    def use_channels_last(self) -> bool:
        """Channels-last memory format: measured faster for training on CPU here (~800 vs 640 img/s ResNet-20)."""
        if self.channels_last is not None:
            return self.channels_last
        return self.device.startswith("cpu")

    def check_out(self) -> None:
        """ConfigError unless ``out`` can receive the checkpoint; checked before any work is done."""
        check_out_path(self.out, force=self.force)

    def resume_path(self) -> Path:
        """Where the resumable state of this run lives: ``<out>.resume.pt``."""
        out = Path(self.out)
        return out.with_name(out.name + ".resume.pt")


def check_out_path(out: str | Path, force: bool = False) -> Path:
    """``out`` if a checkpoint can be written there, else ConfigError saying why and what to do.

    Refused: an existing directory, an existing file (unless ``force``), a parent that is a file, or a folder this
    process cannot write to.
    """
    from slimrt.io import check_writable_parent

    path = Path(out).expanduser()
    if path.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the checkpoint's file name, e.g. {path / 'model.pt'}")
    if path.exists() and not force:
        raise ConfigError(f"--out {out} already exists; pass --force to overwrite it, or choose another --out")
    check_writable_parent(path, f"--out {out}", "; choose another --out")
    return path
