"""``kerafine.calibrate``: repair the probabilities of a trained classifier.

Class weights, over-fitting and label noise leave a model that ranks well but
whose probabilities are off (a class-weighted model of a rare class says 0.6
where the observed frequency is 0.1). :func:`calibrate` fits a one-dimensional
correction on held-out predictions and returns a new ``keras.Model``: the
original graph (shared weights) followed by a calibration layer. The new model
saves to ``.keras`` and loads again with :func:`kerafine.load_model`.

Three methods:

- ``"temperature"`` (Guo et al., 2017, "On Calibration of Modern Neural
  Networks"): divide the logits by one scalar ``T`` fitted by minimising the
  negative log-likelihood on the calibration data. Keeps the ranking (ROC-AUC is
  unchanged) and, for softmax heads, the arg-max. It repairs over- and
  under-confidence, **not** the prior shift of class weights (that moves every
  logit by a constant, which no single scale undoes): use ``"platt"`` or
  ``"isotonic"`` for a class-weighted model.
- ``"platt"``: temperature plus one bias per output column,
  ``activation(logit / T + b)`` (Platt scaling on the logit for a sigmoid head;
  "bias-corrected temperature scaling", Alexandari et al., 2020, for softmax),
  fitted by minimising the negative log-likelihood. Undoes class weights and
  label shift; keeps the binary ranking.
- ``"isotonic"`` (Zadrozny & Elkan, 2002): a monotone piecewise-linear map from
  predicted to observed probability (scikit-learn's ``IsotonicRegression``),
  one per class for softmax heads followed by renormalisation. Corrects any
  monotone distortion, including the prior shift that class weights cause, but
  needs more data (a few hundred rows at least) and can create ties.

Example:

>>> import numpy as np, keras, kerafine
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2)).astype("float32")
>>> y = (x[:, 0] + rng.normal(size=400) > 1.5).astype("float32")
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
>>> model.compile("adam", "binary_crossentropy")
>>> _ = model.fit(x, y, epochs=5, class_weight={0: 1.0, 1: 8.0}, verbose=0)
>>> result = kerafine.calibrate(model, (x[:200], y[:200]), method="isotonic")
>>> result.after.ece < result.before.ece
True
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional

import keras
import numpy as np

from kerafine import _finite
from kerafine._display import displayable, fmt
from kerafine.errors import DataError, invalid_argument

__all__ = ["calibrate", "CalibrationResult", "TemperatureScaling", "IsotonicCalibration"]

_METHODS = ("temperature", "platt", "isotonic")
# Probabilities are clipped to [_EPS, 1 - _EPS] before taking logs, so a saturated
# sigmoid/softmax output (exactly 0 or 1 in float32) still has a finite logit.
_EPS = 1e-7


@keras.saving.register_keras_serializable(package="kerafine")
class TemperatureScaling(keras.layers.Layer):
    """Temperature (and bias) scaling of probabilities: ``activation(logit(p) / T + b)``.

    Takes the output of a sigmoid (``(n, 1)``) or softmax (``(n, k)``) layer,
    recovers the logits (up to a per-row constant for softmax, which the
    softmax ignores), divides them by ``temperature``, adds ``bias`` and
    applies the same activation again. Registered as
    ``"kerafine>TemperatureScaling"``.

    Args:
        temperature: a positive float; above 1 softens, below 1 sharpens.
        activation: ``"sigmoid"`` or ``"softmax"``: the activation of the
            layer whose output this layer receives.
        bias: ``None`` (no bias) or one float per output column. Defaults to
            ``None``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> layer = TemperatureScaling(2.0, "sigmoid")
    >>> p = 1 / (1 + np.exp(-4.0))
    >>> round(float(np.asarray(layer(np.array([[p]], "float32")))[0, 0]), 4)  # sigmoid(2)
    0.8808
    """

    def __init__(self, temperature: float, activation: str, bias=None, **kwargs: Any):
        super().__init__(**kwargs)
        if activation not in ("sigmoid", "softmax"):
            raise invalid_argument("activation", activation, '"sigmoid" or "softmax"')
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
            raise invalid_argument("temperature", temperature, "a finite float > 0")
        self.temperature = float(temperature)
        self.activation = activation
        self.bias = None if bias is None else [float(b) for b in bias]
        if self.bias is not None and not np.all(np.isfinite(self.bias)):
            raise invalid_argument("bias", bias, "finite floats, one per output column")

    def call(self, inputs):
        p = keras.ops.clip(keras.ops.cast(inputs, "float32"), _EPS, 1.0 - _EPS)
        if self.activation == "sigmoid":
            logits = keras.ops.log(p) - keras.ops.log(1.0 - p)
        else:
            logits = keras.ops.log(p)
        logits = logits / self.temperature
        if self.bias is not None:
            logits = logits + np.asarray(self.bias, np.float32)
        if self.activation == "sigmoid":
            return keras.ops.sigmoid(logits)
        return keras.ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "activation": self.activation,
            "bias": self.bias,
        }


@keras.saving.register_keras_serializable(package="kerafine")
class IsotonicCalibration(keras.layers.Layer):
    """A monotone piecewise-linear map of each output column, then renormalisation.

    Column ``j`` of the input is mapped through the linear interpolation of the
    knots ``(x_knots[j], y_knots[j])`` (constant beyond the end knots, as
    scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts). With
    more than one column the mapped values are divided by their row sum (a row
    that maps to all zeros gets the uniform distribution). Registered as
    ``"kerafine>IsotonicCalibration"``.

    Args:
        x_knots: one increasing list of knot positions per output column.
        y_knots: the non-decreasing values at those knots, same lengths.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> layer = IsotonicCalibration([[0.0, 0.5, 1.0]], [[0.0, 0.1, 0.9]])
    >>> [round(float(v), 3) for v in np.asarray(layer(np.array([[0.25], [0.75]], "float32"))).ravel()]
    [0.05, 0.5]
    """

    def __init__(self, x_knots, y_knots, **kwargs: Any):
        super().__init__(**kwargs)
        self.x_knots = [[float(v) for v in row] for row in x_knots]
        self.y_knots = [[float(v) for v in row] for row in y_knots]
        if len(self.x_knots) != len(self.y_knots) or any(
            len(a) != len(b) or len(a) < 1 for a, b in zip(self.x_knots, self.y_knots)
        ):
            raise invalid_argument("y_knots", "lengths that differ from x_knots", "one value per knot, per column")
        # Each column as a sum of ramps: y0 + sum_i slope_i * (clip(x, x_i, x_i+1) - x_i).
        # Padded to a common number of segments (padding ramps have zero width and slope).
        width = max(len(r) for r in self.x_knots)
        lo, hi, slope, base = [], [], [], []
        for xs, ys in zip(self.x_knots, self.y_knots):
            xs = np.asarray(xs, np.float64)
            ys = np.asarray(ys, np.float64)
            dx = np.diff(xs)
            s = np.divide(np.diff(ys), dx, out=np.zeros_like(dx), where=dx > 0)
            pad = width - 1 - dx.size
            lo.append(np.concatenate([xs[:-1], np.full(pad, xs[-1])]))
            hi.append(np.concatenate([xs[1:], np.full(pad, xs[-1])]))
            slope.append(np.concatenate([s, np.zeros(pad)]))
            base.append(ys[0])
        self._lo = np.asarray(lo, np.float32).T  # (segments, columns)
        self._hi = np.asarray(hi, np.float32).T
        self._slope = np.asarray(slope, np.float32).T
        self._base = np.asarray(base, np.float32)
        self._columns = len(self.x_knots)

    def call(self, inputs):
        p = keras.ops.cast(inputs, "float32")[:, None, :]  # (n, 1, columns)
        if self._lo.shape[0] == 0:
            out = keras.ops.zeros_like(p[:, 0, :]) + self._base
        else:
            ramps = (keras.ops.minimum(keras.ops.maximum(p, self._lo), self._hi) - self._lo) * self._slope
            out = self._base + keras.ops.sum(ramps, axis=1)
        if self._columns == 1:
            return out
        total = keras.ops.sum(out, axis=-1, keepdims=True)
        uniform = keras.ops.ones_like(out) / float(self._columns)
        return keras.ops.where(total > 0, out / keras.ops.maximum(total, _EPS), uniform)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "x_knots": self.x_knots, "y_knots": self.y_knots}


@displayable
@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """Result of :func:`calibrate`.

    Attributes:
        model: the calibrated ``keras.Model`` (the original graph and weights,
            then the calibration layer); save it with ``model.save("m.keras")``
            and load it with :func:`kerafine.load_model`.
        method: ``"temperature"``, ``"platt"`` or ``"isotonic"``.
        temperature: the fitted temperature (``None`` for isotonic).
        bias: the fitted bias per output column (``"platt"``), else ``None``.
        before: :class:`kerafine.metrics.Calibration` of the original model on
            ``test_data`` if given, else on ``validation_data``.
        after: the same for the calibrated model.
        evaluated_on: ``"test_data"`` or ``"validation_data"`` (in-sample:
            the correction was fitted there, so ``after`` is optimistic).
    """

    model: Any
    method: str
    temperature: Optional[float]
    bias: Optional[list]
    before: Any
    after: Any
    evaluated_on: str

    def _display(self):
        rows = [("method", self.method)]
        if self.temperature is not None:
            rows.append(("temperature", fmt(self.temperature)))
        rows.append(("ECE", f"{self.before.ece:.4f} -> {self.after.ece:.4f} on {self.evaluated_on}"))
        return "CalibrationResult", rows

    def to_dict(self) -> dict:
        """Plain values: method, temperature, ECE before and after, where measured."""
        return {
            "method": self.method,
            "temperature": self.temperature,
            "bias": self.bias,
            "ece_before": self.before.ece,
            "ece_after": self.after.ece,
            "evaluated_on": self.evaluated_on,
        }

    def plot(self):
        """The before/after reliability diagram as a matplotlib ``Figure``."""
        # A bare Figure (no pyplot): nothing opens a window or needs a display.
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
        for name, cal, marker in (("before", self.before, "o"), ("after", self.after, "s")):
            ax.plot(cal.mean_predicted, cal.fraction_positive, marker=marker, label=f"{name} (ECE {cal.ece:.4f})")
        ax.set(
            xlabel="mean predicted probability",
            ylabel="observed frequency",
            title=f"Reliability, {self.method} calibration ({self.evaluated_on})",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(fontsize="small")
        return fig


def calibrate(
    model,
    validation_data,
    method: str = "temperature",
    *,
    test_data=None,
    batch_size: int = 256,
    n_bins: int = 10,
) -> CalibrationResult:
    """Fit a probability correction on held-out data and return a calibrated model.

    Args:
        model: a built ``keras.Model`` with one output: a sigmoid ``(n, 1)``
            (binary) or a softmax ``(n, k)``, ``k >= 2``, of probabilities
            (the heads of :mod:`kerafine.heads` produce these).
        validation_data: ``(x, y)`` not used for training: ``y`` of 0/1 labels
            (binary) or class indices ``0..k-1`` / one-hot rows (softmax).
        method: ``"temperature"``, ``"platt"`` or ``"isotonic"`` (see the
            module docstring).
            Defaults to ``"temperature"``.
        test_data: optional ``(x, y)`` held out from both training and
            calibration, on which ``before`` / ``after`` are measured.
            Defaults to ``None`` (measured on ``validation_data``).
        batch_size: prediction batch size. Defaults to 256.
        n_bins: equal-width bins of the ECE and the diagram. Defaults to 10.

    Returns:
        :class:`CalibrationResult`; ``.model`` is the calibrated model.

    Raises:
        KerafineError: an unknown ``method``, a model that is not a built
            single-output ``keras.Model``, bad ``batch_size`` / ``n_bins``.
        DataError: data that is not ``(x, y)``, inputs or labels holding NaN/inf
            (named with the count and first rows, before predicting), outputs that are not
            probabilities, labels outside the classes, NaN outputs, or
            calibration data with a single class.

    Example:

    An over-confident model (its logits are 3 times too large) gets a
    temperature near 3:

    >>> import numpy as np, keras
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(2000, 1)).astype("float32")
    >>> y = (rng.random(2000) < 1 / (1 + np.exp(-x[:, 0]))).astype("float32")
    >>> dense = keras.layers.Dense(1, activation="sigmoid")
    >>> model = keras.Sequential([keras.Input((1,)), dense])
    >>> dense.set_weights([np.array([[3.0]]), np.array([0.0])])
    >>> result = calibrate(model, (x, y), "temperature")
    >>> round(result.temperature), result.after.ece < result.before.ece
    (3, True)
    """
    if method not in _METHODS:
        raise invalid_argument("method", method, '"temperature", "platt" or "isotonic"')
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise invalid_argument("batch_size", batch_size, "an int >= 1")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise invalid_argument("n_bins", n_bins, "an int >= 1")
    if not isinstance(model, keras.Model) or not model.built or not getattr(model, "inputs", None):
        raise invalid_argument("model", model, "a built keras.Model with defined inputs (call it or fit it first)")
    if len(model.outputs) != 1:
        raise invalid_argument("model", f"a model with {len(model.outputs)} outputs", "a model with one output")
    x_val, y_val = _split("validation_data", validation_data)
    test = None if test_data is None else _split("test_data", test_data)
    from kerafine.backbones.tabular import imputes_missing

    nan_ok = ("inputs",) if imputes_missing(model) else ()
    for name, part in (("validation_data", (x_val, y_val)), ("test_data", test)):
        if part is not None:
            # Before any prediction: a NaN row's output means nothing (a ReLU may map NaN to 0).
            _finite.check(
                name,
                {"inputs": part[0], "labels": part[1]},
                nan_ok=nan_ok,
                hint="A correction fitted or measured on them would be wrong. Clean the data or leave those rows out.",
            )

    p_val = _predict(model, x_val, batch_size, "validation_data")
    activation = _activation(p_val)
    y_idx = _labels("validation_data", y_val, p_val)
    if np.unique(y_idx).size < 2:
        raise invalid_argument(
            "validation_data",
            f"labels of a single class ({int(y_idx[0])})",
            "calibration data holding at least two classes",
            error=DataError,
        )

    temperature = bias = None
    if method in ("temperature", "platt"):
        temperature, bias = _fit_scaling(p_val, y_idx, activation, with_bias=method == "platt")
        layer = TemperatureScaling(temperature, activation, bias=bias, name="calibration")
    else:
        xs, ys = _fit_isotonic(p_val, y_idx)
        layer = IsotonicCalibration(xs, ys, name="calibration")
    # model.input keeps the input structure (a dict for tabular encoders), so the
    # calibrated model is fed exactly like the original.
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a Sequential built from keras.Input has only .inputs
        inputs = model.inputs
    calibrated = keras.Model(inputs, layer(model.outputs[0]), name=f"{model.name}_calibrated")

    if test is None:
        where, x_eval, y_eval, p_before = "validation_data", x_val, y_idx, p_val
    else:
        where, x_eval = "test_data", test[0]
        p_before = _predict(model, x_eval, batch_size, "test_data")
        y_eval = _labels("test_data", test[1], p_before)
    p_after = _predict(calibrated, x_eval, batch_size, where)
    return CalibrationResult(
        model=calibrated,
        method=method,
        temperature=temperature,
        bias=bias,
        before=_reliability(p_before, y_eval, n_bins),
        after=_reliability(p_after, y_eval, n_bins),
        evaluated_on=where,
    )


# ------------------------------------------------------------ helpers


def _split(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise invalid_argument(name, type(data).__name__, "a tuple (x, y) of arrays", error=DataError)
    return data[0], data[1]


def _predict(model, x, batch_size, name) -> np.ndarray:
    p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or p.shape[0] == 0:
        raise invalid_argument(
            name, f"model outputs of shape {p.shape}", "(n, 1) or (n, k) outputs for n >= 1 rows", error=DataError
        )
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise invalid_argument(
            name,
            f"{int(bad.sum())} rows with non-finite model outputs (first rows {rows})",
            "inputs on which the model gives finite probabilities",
            hint="Check those rows for NaN/inf features.",
            error=DataError,
        )
    return p


def _activation(p: np.ndarray) -> str:
    if p.min() < 0.0 or p.max() > 1.0:
        raise invalid_argument(
            "model",
            f"outputs in [{p.min():.4g}, {p.max():.4g}]",
            "probabilities (a sigmoid or softmax output layer)",
            hint="Logit outputs: add the activation first, e.g. keras.layers.Activation('sigmoid').",
            error=DataError,
        )
    if p.shape[1] == 1:
        return "sigmoid"
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise invalid_argument(
            "model",
            f"{p.shape[1]} output columns whose rows do not sum to 1",
            "one sigmoid unit (binary) or a softmax over k >= 2 classes",
            error=DataError,
        )
    return "softmax"


def _labels(name, y, p: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    k = p.shape[1]
    if y.ndim == 2 and y.shape[1] == k and k > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise invalid_argument(
            name, f"labels of shape {y.shape}", f"({p.shape[0]},) labels, one per row", error=DataError
        )
    n_classes = 2 if k == 1 else k
    yf = y.astype(np.float64)
    ok = np.isfinite(yf) & (yf == np.round(yf)) & (yf >= 0) & (yf < n_classes)
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        raise invalid_argument(
            name,
            f"label {np.asarray(y[first]).item()!r} at row {first}",
            f"class indices 0..{n_classes - 1}",
            error=DataError,
        )
    return yf.astype(np.int64)


def _logits(p: np.ndarray, activation: str) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    if activation == "sigmoid":
        return (np.log(q) - np.log1p(-q))[:, 0]
    return np.log(q)


def _fit_scaling(p: np.ndarray, y: np.ndarray, activation: str, with_bias: bool):
    """Minimise the NLL over log T (and the biases): smooth and convex in the biases."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    z = _logits(p, activation)
    k = 1 if activation == "sigmoid" else p.shape[1]

    def nll(params):
        t = np.exp(params[0])
        b = params[1:] if with_bias else np.zeros(k)
        if activation == "sigmoid":
            s = z / t + b[0]
            # -log sigmoid(s) for y=1, -log(1 - sigmoid(s)) for y=0, both stable.
            return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -s, s))))
        return float(-np.mean(log_softmax(z / t + b, axis=1)[np.arange(y.size), y]))

    start = np.zeros(1 + (k if with_bias else 0))
    # T in [0.01, 100] covers any realistic miscalibration; biases within +-50 logits.
    bounds = [(np.log(0.01), np.log(100.0))] + [(-50.0, 50.0)] * (start.size - 1)
    res = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
    bias = None
    if with_bias:
        b = res.x[1:]
        # Softmax ignores a common shift: report the biases centred.
        bias = (b - b.mean() if k > 1 else b).tolist()
    return float(np.exp(res.x[0])), bias


def _fit_isotonic(p: np.ndarray, y: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    columns = [0] if p.shape[1] == 1 else range(p.shape[1])
    xs, ys = [], []
    for c in columns:
        target = (y == 1) if p.shape[1] == 1 else (y == c)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[:, c], target.astype(np.float64))
        xs.append(iso.X_thresholds_.tolist())
        ys.append(iso.y_thresholds_.tolist())
    return xs, ys


def _reliability(p: np.ndarray, y: np.ndarray, n_bins: int):
    from kerafine.metrics import classification_report

    score = p[:, 0] if p.shape[1] == 1 else p
    labels = None if p.shape[1] == 1 else list(range(p.shape[1]))
    with warnings.catch_warnings():
        # Only the reliability curve is used: the report's accuracy warnings do not apply.
        warnings.simplefilter("ignore")
        return classification_report(y, score, threshold=0.5, n_bins=n_bins, labels=labels).calibration
