"""Data as ``kerafine fit`` reads it, shared by ``fit``, ``evaluate`` and ``update``.

Two things live here so that the three commands read the same rows the same way:

* :func:`load_config_data`: the ``data:`` section of a fit config loaded, split
  (by server, by time or at random, with the config's seed) and turned into
  model inputs, as ``kerafine fit`` trains on them.
* The *spec* of a fitted model (the ``model.kerafine.json`` that ``fit`` and
  ``demo`` write beside ``model.keras``: kind, columns, window, normaliser) and
  the functions that turn labelled data into that model's inputs:
  :func:`check_config_fits_model`, :func:`config_split` (a split of a config's
  data) and :func:`load_files` (explicit files).

Every check runs before any window is built or any model is loaded, and a
mismatch is a :class:`~kerafine.errors.DataError` naming the argument or the
config field.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from kerafine.errors import DataError, invalid_argument

__all__ = ["METRIC_FILES", "load_config_data", "check_config_fits_model", "config_split", "load_files"]

# The five CSVs of server metrics, by the name of the config field (and of the file in a demo directory).
METRIC_FILES = ("cpu", "memory", "diskio", "uptime", "failures")
SPLITS = ("train", "val", "test")


def _load_source(d):
    """The config's data loaded whole (``ServerMetrics`` or ``TabularData``), not split."""
    if d.kind == "server_metrics":
        from kerafine.data import load_server_metrics

        return load_server_metrics(
            cpu=d.cpu,
            memory=d.memory,
            diskio=d.diskio,
            uptime=d.uptime,
            failures=d.failures,
            freq=d.freq,
            horizon=d.horizon,
            max_gap=d.max_gap,
        )
    from kerafine.data import load_tabular

    return load_tabular(d.csv, d.label, numeric=d.numeric, categorical=d.categorical)


def _split_source(d, source) -> dict:
    """``{"train": part, "val": part, "test": part}`` of the loaded data, split as ``fit`` splits it."""
    import numpy as np

    sp = d.split
    if d.kind == "server_metrics":
        from kerafine.data import split_by_group, split_by_time

        if sp.by == "server":
            splits = split_by_group(source, val=sp.val, test=sp.test, seed=sp.seed)
        else:
            splits = split_by_time(source, val=sp.val, test=sp.test)
        return {"splits": splits, **{name: getattr(splits, name) for name in SPLITS}}
    rng = np.random.default_rng(sp.seed)
    order = rng.permutation(len(source))
    n_test, n_val = int(round(sp.test * len(source))), int(round(sp.val * len(source)))
    idx = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {name: source.take(np.sort(idx[name])) for name in SPLITS}


def _finite_table(t, csv, non_finite: str, say):
    """The table without rows holding NaN/inf (``data.non_finite: drop``), or a DataError naming them."""
    import numpy as np

    from kerafine import _finite

    # Empty cells are load_tabular's business (refused, or kept for an imputing encoder); infinities are ours.
    found = _finite.scan({"columns": t.x}, nan_ok=("columns",))
    if not found.count:
        return t
    # A CSV with a header: data row i is on line i + 2.
    lines = [i + 2 for i in found.first_rows()]
    text = f"{_finite.describe(found)}, CSV lines {lines}"
    if non_finite == "raise" or found.count == found.n_rows:
        raise DataError(
            f"Invalid value for field `data.csv`: {os.fspath(csv)!r}: {text}. Training on them would poison the "
            "model. Fix the cells, or set `data.non_finite: drop` to train without these rows."
        )
    say(f"data.non_finite: drop: left out {text}")
    return t.take(np.flatnonzero(~found.mask))


def _finite_windows(part, split: str, non_finite: str, say):
    """``(x, y)`` windows of one split without those holding NaN/inf, or a DataError naming them."""
    from kerafine import _finite

    x, y = part
    found = _finite.scan({"windows": x, "labels": y})
    if not found.count:
        return part
    if non_finite == "raise" or found.count == found.n_rows:
        raise DataError(
            f"Invalid value for field `data`: the {split} split: {_finite.describe(found)}. Training or evaluating "
            "on them would poison or mislead. Fix the data, or set `data.non_finite: drop` to leave these windows out."
        )
    say(f"data.non_finite: drop: left out of the {split} split {_finite.describe(found)}")
    keep = ~found.mask
    return x[keep], y[keep]


def load_config_data(d, say=None) -> dict:
    """Load and split the data a fit config names, as ``kerafine fit`` trains on it.

    Args:
        d: the config's ``data`` section (``cfg.data`` of
            :func:`kerafine.config.load_config`).
        say: a callable taking one progress line. Defaults to ``None``:
            silent.

    Returns:
        ``{"train": (x, y), "val": (x, y), "test": (x, y), "pretrain_x":
        ..., "spec": ..., "shape": ..., "notes": [...]}``; ``spec`` is what
        ``fit`` writes to ``model.kerafine.json``.
    """
    from kerafine.data.labels import check_label_classes

    say = say or (lambda message: None)
    source = _load_source(d)
    if d.kind != "server_metrics":
        source = _finite_table(source, d.csv, d.non_finite, say)
    parts = _split_source(d, source)
    if d.kind == "server_metrics":
        say(f"Loaded server metrics: {source.summary()}")
        splits, norm = parts["splits"].normalized()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            arrays = {name: getattr(splits, name).windows(d.window, stride=d.stride) for name in SPLITS}
            pretrain_x = splits.train.forecast_windows(d.window, stride=d.stride)[0]
        notes = sorted({str(w.message) for w in caught})
        for name in SPLITS:
            arrays[name] = _finite_windows(arrays[name], name, d.non_finite, say)
        for name in SPLITS:
            check_label_classes(arrays[name][1], {"train": "training", "val": "validation"}.get(name, name))
        spec = {
            "kind": "server_metrics",
            "features": list(source.features),
            "window": d.window,
            "stride": d.stride,
            "freq": d.freq,
            "horizon": d.horizon,
            "max_gap": d.max_gap,
            "normalizer": norm.to_dict(),
        }
        return {
            **arrays,
            "pretrain_x": pretrain_x,
            "spec": spec,
            "shape": (d.window, len(source.features)),
            "notes": notes,
        }
    arrays = {}
    for name in SPLITS:
        check_label_classes(parts[name].y, {"train": "training", "val": "validation"}.get(name, name))
        arrays[name] = (parts[name].x, parts[name].y)
    say(
        f"Loaded {len(source)} rows: {len(source.numeric)} numeric, {len(source.categorical)} categorical columns; "
        f"train {len(arrays['train'][1])}, val {len(arrays['val'][1])}, test {len(arrays['test'][1])}"
    )
    spec = {
        "kind": "tabular",
        "label": d.label,
        "numeric": list(source.numeric),
        "categorical": list(source.categorical),
    }
    return {**arrays, "pretrain_x": None, "spec": spec, "shape": None, "notes": []}


def _mismatch(argument: str, field: str, got, model) -> DataError:
    return DataError(
        f"Invalid value for argument `{argument}`: its field `{field}` is {got!r}, but the model was "
        f"trained on {model!r}; the config's data does not match the model's inputs."
    )


def check_config_fits_model(spec: dict, d, argument: str = "DATA") -> None:
    """Refuse a config's data that cannot feed the model described by ``spec`` (before reading any data).

    Server metrics must have the model's window and sampling step (``freq``);
    a table the model's label and, when the config lists them, its numeric
    and categorical columns. ``horizon``, ``stride``, ``max_gap`` and the split
    are the config's to choose.
    """
    kind = spec.get("kind")
    if d.kind != kind:
        raise _mismatch(argument, "data.kind", d.kind, kind)
    if kind == "server_metrics":
        import pandas as pd

        if d.window != spec["window"]:
            raise _mismatch(argument, "data.window", d.window, spec["window"])
        if pd.Timedelta(pd.tseries.frequencies.to_offset(d.freq)) != pd.Timedelta(
            pd.tseries.frequencies.to_offset(spec["freq"])
        ):
            raise _mismatch(argument, "data.freq", d.freq, spec["freq"])
        return
    if d.label != spec["label"]:
        raise _mismatch(argument, "data.label", d.label, spec["label"])
    for field in ("numeric", "categorical"):
        listed = getattr(d, field)
        if listed is not None and list(listed) != list(spec[field]):
            raise _mismatch(argument, f"data.{field}", list(listed), list(spec[field]))


def _same_columns(found: list, trained: list, where: str, argument: str, extra_ok: bool = False) -> None:
    missing = [c for c in trained if c not in found]
    extra = [c for c in found if c not in trained]
    if missing or (extra and not extra_ok):
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra and not extra_ok:
            detail.append(f"not seen in training {extra}")
        raise DataError(
            f"Invalid value for argument `{argument}`: {where!r} has other columns than the model was trained "
            f"on ({'; '.join(detail)}); the model expects {trained}, the data has {found}."
        )


def _model_windows(spec: dict, metrics, where: str, argument: str, stride: int):
    from kerafine.data import Normalizer

    _same_columns(list(metrics.features), spec["features"], where, argument, extra_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # short segments skipped: expected on any real fleet
        return metrics.windows(
            spec["window"],
            stride=stride,
            features=spec["features"],
            normalizer=Normalizer.from_dict(spec["normalizer"]),
        )


def config_split(spec: dict, d, split: str = "test", argument: str = "DATA"):
    """``(x, y)`` of one split of a config's data, in the input form of the model described by ``spec``.

    The rows are the ones ``kerafine fit`` puts in that split (same loader,
    same split and seed); the inputs are scaled with the model's own
    normaliser, never refitted.
    """
    if split not in SPLITS:
        raise invalid_argument("--split", split, f"one of {list(SPLITS)}")
    check_config_fits_model(spec, d, argument)
    if d.kind == "server_metrics":
        part = _split_source(d, _load_source(d))[split]
        return _model_windows(spec, part, os.fspath(d.cpu.parent), argument, d.stride)
    import pandas as pd

    from kerafine.data import load_tabular

    header = list(pd.read_csv(d.csv, nrows=0).columns)
    _same_columns(
        header, spec["numeric"] + spec["categorical"] + [spec["label"]], os.fspath(d.csv), argument, extra_ok=True
    )
    data = load_tabular(d.csv, spec["label"], numeric=spec["numeric"], categorical=spec["categorical"])
    part = _split_source(d, data)[split]
    return part.x, part.y


def _check_file(path: Path, argument: str, expected: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise invalid_argument(argument, os.fspath(path), expected, "No such file or directory.", error=DataError)
    return path


def load_files(spec: dict, paths, argument: str = "DATA"):
    """``(x, y)`` of labelled data in explicit files, in the input form of the model described by ``spec``.

    Args:
        spec: the model's ``model.kerafine.json``.
        paths: for a table, the CSV; for server metrics, a directory holding
            ``cpu.csv``, ``memory.csv``, ``diskio.csv``, ``uptime.csv`` and
            ``failures.csv``, or a dict ``{name: path}`` of those five.
        argument: the name of the argument in error messages.

    Returns:
        ``(x, y)``: windows scaled with the model's normaliser (server
        metrics) or the table's inputs and labels.
    """
    if spec.get("kind") == "server_metrics":
        from kerafine.data import load_server_metrics

        expected = "a directory holding " + ", ".join(f"{n}.csv" for n in METRIC_FILES)
        if isinstance(paths, dict):
            files = {n: _check_file(paths[n], f"--{n}", "an existing CSV file") for n in METRIC_FILES}
            where = os.fspath(files["cpu"])
        else:
            path = _check_file(paths, argument, expected)
            if not path.is_dir():
                raise invalid_argument(
                    argument, os.fspath(path), expected, "This model reads server metrics.", error=DataError
                )
            missing = [f"{n}.csv" for n in METRIC_FILES if not (path / f"{n}.csv").is_file()]
            if missing:
                raise invalid_argument(
                    argument, os.fspath(path), expected, f"Missing: {', '.join(missing)}.", error=DataError
                )
            files, where = {n: path / f"{n}.csv" for n in METRIC_FILES}, os.fspath(path)
        metrics = load_server_metrics(**files, freq=spec["freq"], horizon=spec["horizon"], max_gap=spec["max_gap"])
        return _model_windows(spec, metrics, where, argument, spec["stride"])
    import pandas as pd

    from kerafine.data import load_tabular

    if isinstance(paths, dict):
        raise invalid_argument(
            "--" + next(iter(paths)),
            os.fspath(next(iter(paths.values()))),
            "no metric file: this model reads a table (pass its CSV as DATA)",
            error=DataError,
        )
    path = _check_file(paths, argument, "an existing CSV file")
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError) as exc:
        raise invalid_argument(argument, os.fspath(path), "a readable CSV file", str(exc), error=DataError) from None
    _same_columns(
        header, spec["numeric"] + spec["categorical"] + [spec["label"]], os.fspath(path), argument, extra_ok=True
    )
    t = load_tabular(path, spec["label"], numeric=spec["numeric"], categorical=spec["categorical"])
    return t.x, t.y
