"""The schema of ``kerafine fit CONFIG.yaml``, validated with pydantic.

A config names the data source, the task, the backbone, the head, what is
frozen, the two-phase schedule with its hyperparameters (and an optional
learning-rate search), the callbacks and the output directory. It is read
with ``yaml.safe_load`` (no Python objects can be built from YAML) and every
problem is reported as a :class:`~kerafine.errors.KerafineError` naming the
field, e.g. ``data.window``, before any data is read.

Relative paths in the config are relative to the config file's directory, so
a config and its data can be moved together.

Example:

>>> cfg = FitConfig.model_validate({
...     "data": {"kind": "tabular", "csv": "clicks.csv", "label": "clicked"},
...     "backbone": {"name": "tabular"},
...     "output_dir": "runs/clicks",
... })
>>> cfg.schedule.head_epochs, cfg.backbone.name
(5, 'tabular')
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kerafine.errors import KerafineError, did_you_mean

__all__ = ["FitConfig", "load_config", "load_data_config", "EXAMPLE_CONFIG", "SEQUENCE_BACKBONES", "TABULAR_BACKBONES"]

SEQUENCE_BACKBONES = ("lstm", "gru")
TABULAR_BACKBONES = ("tabular",)


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `epohcs:` must not be ignored silently.
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    """How rows are split into train / validation / test."""

    by: Literal["server", "time", "random"] = "server"
    val: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _leave_training(self):
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must be < 1 (got {self.val} + {self.test})")
        return self


class ServerMetricsData(_Strict):
    """Per-metric CSVs read by :func:`kerafine.data.load_server_metrics`."""

    kind: Literal["server_metrics"]
    cpu: Path
    memory: Path
    diskio: Path
    uptime: Path
    failures: Path
    freq: str = "5s"
    horizon: int = Field(12, ge=1)
    max_gap: int = Field(3, ge=0)
    window: int = Field(32, ge=2)
    stride: int = Field(1, ge=1)
    split: SplitConfig = SplitConfig()
    # Windows holding NaN/inf: "raise" refuses them (naming split, count, first windows), "drop" leaves them out.
    non_finite: Literal["raise", "drop"] = "raise"


class TabularDataConfig(_Strict):
    """One CSV read by :func:`kerafine.data.load_tabular`."""

    kind: Literal["tabular"]
    csv: Path
    label: str
    numeric: Optional[list[str]] = None
    categorical: Optional[list[str]] = None
    split: SplitConfig = SplitConfig(by="random")
    # Rows holding NaN/inf in a numeric column: "raise" refuses them (naming rows and CSV lines), "drop" leaves them out.
    non_finite: Literal["raise", "drop"] = "raise"


class BackboneConfig(_Strict):
    """The feature extractor.

    ``name`` is ``"lstm"`` or ``"gru"`` for server metrics, ``"tabular"`` for
    tables. ``weights`` optionally names a pretrained ``.keras`` encoder to
    start from; otherwise a sequence encoder is pretrained self-supervised for
    ``pretrain_epochs`` on the (unlabelled) training windows. Both keys are for
    server metrics only: with ``data.kind: tabular`` the backbone is trained
    from scratch, and setting ``weights`` (or ``pretrain_epochs`` above 0) is
    an error rather than a key silently unused.
    """

    name: str
    units: list[Annotated[int, Field(ge=1)]] = [32]
    weights: Optional[Path] = None
    pretrain_epochs: int = Field(3, ge=0)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        known = SEQUENCE_BACKBONES + TABULAR_BACKBONES
        if value.lower() in known:
            return value.lower()
        hint = did_you_mean(value, known)
        vision = ""
        # A vision backbone is a real kerafine backbone, but fit reads CSV files only.
        from kerafine.backbones._registry import list_backbones

        if value.lower() in list_backbones():
            vision = " Vision backbones need images, which `kerafine fit` does not read; use the Python API."
        raise ValueError(f"unknown backbone {value!r}; expected one of {list(known)}.{hint}{vision}")


class HeadConfig(_Strict):
    """The trainable head (see :func:`kerafine.heads.classification`)."""

    hidden: list[Annotated[int, Field(ge=1)]] = [16]
    dropout: float = Field(0.0, ge=0, lt=1)


class LRSearchConfig(_Strict):
    """A short search for the head's learning rate, scored by validation ROC-AUC."""

    candidates: list[Annotated[float, Field(gt=0)]] = [3e-4, 1e-3, 3e-3, 1e-2]
    epochs: int = Field(1, ge=1)


class ScheduleConfig(_Strict):
    """The two phases: head only (backbone frozen), then fine-tuning with the top unfrozen."""

    head_epochs: int = Field(5, ge=1)
    finetune_epochs: int = Field(3, ge=0)
    batch_size: int = Field(64, ge=1)
    learning_rate: Union[float, Literal["search"]] = "search"
    finetune_learning_rate: Optional[float] = Field(None, gt=0)
    unfreeze: Union[Literal["all"], Annotated[int, Field(ge=1)]] = "all"
    lr_search: LRSearchConfig = LRSearchConfig()
    # null, "balanced" or {class: weight}; checked against the training labels once they are read.
    class_weight: Union[None, Literal["balanced"], dict[int, float]] = None

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, value):
        expected = 'expected null, "balanced" or a mapping {class index: weight >= 0} such as {0: 1.0, 1: 5.0}'
        if value is None or value == "balanced":
            return value
        if isinstance(value, str):
            raise ValueError(f"unknown class_weight {value!r}; {expected}.{did_you_mean(value, ['balanced'])}")
        if not isinstance(value, dict) or not value:
            raise ValueError(f"class_weight {value!r} is not usable; {expected}")
        for key, weight in value.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral):
                raise ValueError(f"class_weight key {key!r} is not a class index; {expected}")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, numbers.Real)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(f"class_weight of class {key} is {weight!r}; weights must be finite numbers >= 0")
        if not any(value.values()):
            raise ValueError(f"class_weight {value!r} gives every class weight 0; at least one weight must be > 0")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _positive(cls, value):
        if not isinstance(value, str) and value <= 0:
            raise ValueError('must be > 0 or "search"')
        return value


class EarlyStoppingConfig(_Strict):
    enabled: bool = True
    patience: int = Field(3, ge=1)


class CallbacksConfig(_Strict):
    """Which kerafine callbacks to attach to the training run."""

    checkpoint: bool = True
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    auc: bool = True
    drift: bool = True
    monitor: bool = True


class FitConfig(_Strict):
    """The whole ``kerafine fit`` configuration."""

    data: Annotated[Union[ServerMetricsData, TabularDataConfig], Field(discriminator="kind")]
    task: Literal["binary"] = "binary"
    backbone: BackboneConfig
    head: HeadConfig = HeadConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    output_dir: Path
    seed: int = 0

    @model_validator(mode="after")
    def _backbone_fits_data(self):
        kind = self.data.kind
        ok = SEQUENCE_BACKBONES if kind == "server_metrics" else TABULAR_BACKBONES
        if self.backbone.name not in ok:
            raise ValueError(
                f"backbone.name {self.backbone.name!r} does not fit data.kind {kind!r}; expected one of {list(ok)}"
            )
        if kind == "tabular":
            # The tabular backbone is built and trained here; it has no pretrained encoder to load and
            # no self-supervised pretraining, so these keys would be silently unused (issue 19).
            if self.backbone.weights is not None:
                raise ValueError(
                    f"backbone.weights {os.fspath(self.backbone.weights)!r} is not used with data.kind 'tabular' "
                    "(the tabular backbone is trained from scratch here); remove the key, or use the Python API "
                    "(kerafine.backbones.from_model and kerafine.fine_tune) to start from a saved tabular model"
                )
            if "pretrain_epochs" in self.backbone.model_fields_set and self.backbone.pretrain_epochs:
                raise ValueError(
                    f"backbone.pretrain_epochs {self.backbone.pretrain_epochs} is not used with data.kind "
                    "'tabular' (self-supervised pretraining is for server_metrics windows); remove the key or set it to 0"
                )
        splits = ("server", "time") if kind == "server_metrics" else ("random",)
        if self.data.split.by not in splits:
            # Overlapping windows of one server in two random splits would leak; tables have no server.
            raise ValueError(
                f"data.split.by {self.data.split.by!r} does not fit data.kind {kind!r}; expected one of {list(splits)}"
            )
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("server_metrics", "tabular")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check its spelling)"
        elif "input" in err and err["type"] not in ("missing", "value_error"):
            msg = f"{msg} (received {err['input']!r})"
        if not loc:
            # A check across keys (a model validator) names its key first: report it as that field.
            named = re.match(r"([a-z_]+(?:\.[a-z_]+)+) ", msg)
            loc = named.group(1) if named else ""
        lines.append(f"  field `{loc or '<root>'}`: {msg}")
    return f"Invalid config {source}:\n" + "\n".join(lines)


def _resolve_paths(cfg: FitConfig, base: Path) -> FitConfig:
    def fix(p):
        return _resolve(p, base)

    data = cfg.data
    updates = {}
    for name in ("cpu", "memory", "diskio", "uptime", "failures", "csv"):
        if hasattr(data, name):
            updates[name] = fix(getattr(data, name))
    data = data.model_copy(update=updates)
    backbone = cfg.backbone.model_copy(update={"weights": fix(cfg.backbone.weights)})
    return cfg.model_copy(update={"data": data, "backbone": backbone, "output_dir": fix(cfg.output_dir)})


def _read_yaml(path: Path, argument: str = "CONFIG") -> dict:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KerafineError(
            f"Invalid value for argument `{argument}`: cannot read {os.fspath(path)!r} ({exc.strerror})."
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KerafineError(f"Invalid config {os.fspath(path)!r}: not valid YAML ({exc}).") from exc
    if not isinstance(raw, dict):
        raise KerafineError(
            f"Invalid config {os.fspath(path)!r}: expected a mapping of keys at the top level, got {type(raw).__name__}."
        )
    return raw


class _DataOnly(_Strict):
    """A file holding only the ``data:`` section of a fit config (what ``kerafine evaluate`` reads)."""

    data: Annotated[Union[ServerMetricsData, TabularDataConfig], Field(discriminator="kind")]


def load_data_config(path, argument: str = "DATA") -> Union[ServerMetricsData, TabularDataConfig]:
    """The ``data:`` section of a YAML file: a whole ``kerafine fit`` config, or a file holding only ``data:``.

    Validated as :func:`load_config` validates it (a whole config is checked
    whole, except that ``output_dir`` is not created); paths are made absolute
    relative to the file.

    Args:
        path: the YAML file.
        argument: the argument's name in error messages. Defaults to ``"DATA"``.

    Returns:
        The ``data`` section (``cfg.data`` of a :class:`FitConfig`).

    Raises:
        KerafineError: the file cannot be read or parsed, or a field is
            invalid; the message names every offending field.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clicks.yaml"
    >>> _ = path.write_text("data: {kind: tabular, csv: clicks.csv, label: clicked}")
    >>> data = load_data_config(path)
    >>> data.kind, data.csv.name, data.csv.is_absolute(), data.split.by
    ('tabular', 'clicks.csv', True, 'random')
    """
    path = Path(path)
    raw = _read_yaml(path, argument)
    if set(raw) != {"data"}:
        return load_config(path, check_output_dir=False).data
    try:
        data = _DataOnly.model_validate(raw).data
    except ValidationError as exc:
        raise KerafineError(_format_errors(exc, repr(os.fspath(path)))) from None
    base = path.resolve().parent
    return data.model_copy(
        update={
            name: _resolve(getattr(data, name), base)
            for name in ("cpu", "memory", "diskio", "uptime", "failures", "csv")
            if hasattr(data, name)
        }
    )


def _resolve(p, base: Path):
    if p is None:
        return None
    p = Path(os.path.expanduser(os.fspath(p)))
    return p if p.is_absolute() else (base / p)


def load_config(path, check_output_dir: bool = True) -> FitConfig:
    """Read and validate a YAML config.

    Args:
        path: the YAML file.
        check_output_dir: create ``output_dir`` and check it is writable.
            Defaults to ``True``.

    Returns:
        A :class:`FitConfig` with paths made absolute (relative to the file).

    Raises:
        KerafineError: the file cannot be read or parsed, or a field is
            invalid; the message names every offending field.
    """
    from kerafine._io import check_writable_directory

    path = Path(path)
    raw = _read_yaml(path)
    try:
        cfg = FitConfig.model_validate(raw)
    except ValidationError as exc:
        raise KerafineError(_format_errors(exc, repr(os.fspath(path)))) from None
    cfg = _resolve_paths(cfg, path.resolve().parent)
    if check_output_dir:
        try:
            check_writable_directory(cfg.output_dir, "output_dir")
        except KerafineError as exc:
            raise KerafineError(f"Invalid config {os.fspath(path)!r}: field `output_dir`: {exc}") from None
    return cfg


EXAMPLE_CONFIG = """\
# kerafine fit configuration. Run: kerafine fit this-file.yaml
# Relative paths are relative to this file. Unknown keys are errors.

data:
  kind: server_metrics        # server_metrics (four metric CSVs) or tabular (one CSV)
  cpu: data/cpu.csv           # columns: server, timestamp, <one or more values>
  memory: data/memory.csv
  diskio: data/diskio.csv
  uptime: data/uptime.csv     # seconds since boot; a drop marks a restart
  failures: data/failures.csv # server, timestamp of each failure
  freq: 1min                  # grid step the samples are resampled to
  horizon: 30                 # label: "fails within the next 30 steps"
  max_gap: 3                  # longer gaps are dropped and reported, shorter ones interpolated
  window: 32                  # steps per input window
  stride: 2                   # steps between window starts
  split:
    by: server                # server (no server in two splits) or time (train on the past)
    val: 0.2
    test: 0.2
    seed: 0
  # For a table instead:
  # kind: tabular
  # csv: data/clicks.csv
  # label: clicked
  # numeric: [price, age]     # default: every numeric column but the label
  # categorical: [country]    # default: every text column

task: binary                  # binary classification, judged by ROC-AUC

backbone:
  name: lstm                  # lstm or gru (server_metrics); tabular (tabular)
  units: [32]                 # recurrent / dense widths; the last is the embedding size
  # weights: encoder.keras    # start from a pretrained encoder instead of pretraining here (server_metrics only)
  pretrain_epochs: 3          # self-supervised pretraining on the training windows (0: none; server_metrics only)

head:
  hidden: [16]
  dropout: 0.1

schedule:
  head_epochs: 5              # phase 1: backbone frozen, head trained
  finetune_epochs: 3          # phase 2: backbone unfrozen (0 skips it)
  batch_size: 64
  learning_rate: search       # a float, or "search": pick the best of lr_search.candidates
  finetune_learning_rate: null  # default: learning_rate / 10
  unfreeze: all               # phase 2 unfreezes all backbone layers, or this many top layers
  class_weight: null          # null, balanced (n / (2 * count) per class, from the training labels), or {0: 1.0, 1: 10.0}
  lr_search:
    candidates: [0.0003, 0.001, 0.003, 0.01]
    epochs: 1                 # epochs per candidate, scored by validation ROC-AUC

callbacks:
  checkpoint: true            # CheckpointRestart: a re-run resumes where it stopped
  early_stopping:
    enabled: true
    patience: 3               # on validation ROC-AUC
  auc: true                   # AUCTracker: exact val_auc each epoch, ROC/PR curves in TensorBoard
  drift: true                 # DriftMonitor: validation inputs against the training inputs (per-window means of each metric)
  monitor: true               # TrainingMonitor: NaN loss, dead gradients, overfitting alerts

output_dir: runs/my-run       # TensorBoard logs, checkpoints, model.keras, report.json, report.png
seed: 0
"""
