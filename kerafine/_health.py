"""Dead-model checks shared by :func:`kerafine.fine_tune` and ``TrainingMonitor``.

Two checks, each cheap and each true on any data by construction:

* **constant backbone features**: the backbone's output (``training=False``)
  on a probe batch of at most :data:`PROBE_ROWS` rows. A feature (one column of
  the flattened output) is *near-constant* when its standard deviation over
  the probe rows is at most :data:`RELATIVE_STD` times its root-mean-square:
  a constant feature, zero or not, scores 0; the ratio does not change when
  the inputs or the features are rescaled, so the rule needs no knowledge of
  the data's scale; ``1e-4`` is about a thousand float32 rounding steps, far
  above round-off. The backbone is flagged when at least
  :data:`CONSTANT_SHARE` of its features are near-constant while the probe
  inputs themselves differ between rows (identical inputs rightly give
  identical features and are not judged).
* **one-class predictions**: every row of the validation data gets the same
  predicted class (arg-max of a softmax, or a single output at 0.5, 0 for
  logits) while its labels hold more than one class.

The likely cause named for constant features: BatchNormalization moving
statistics that do not fit the data. kerafine runs backbone BatchNorm in
inference mode (keras-team/keras#11590); a backbone whose moving statistics
were accumulated with another momentum (e.g. a MobileNetV2 pretrained with
Keras's default momentum over too few steps) can reach high training-mode
accuracy while its inference-mode features are constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "CONSTANT_SHARE",
    "PROBE_ROWS",
    "RELATIVE_STD",
    "check_backbone",
    "feature_spread",
    "from_logits_of",
    "is_classification_loss",
    "one_class",
    "predicted_classes",
]

#: A feature is near-constant when its std over the probe rows is at most this times its RMS.
RELATIVE_STD = 1e-4
#: The backbone is flagged when at least this share of its features is near-constant.
CONSTANT_SHARE = 0.9
#: Rows of the probe batch.
PROBE_ROWS = 256


def feature_spread(features, rtol: float = RELATIVE_STD) -> dict | None:
    """Per-feature relative spread of ``features`` (rows first), or ``None`` for fewer than 2 rows.

    Returns ``{"rows", "features", "constant", "share", "max_relative_std"}``:
    ``constant`` counts the finite columns whose std is at most ``rtol`` times
    their RMS; columns holding a non-finite value are left out (they are a
    problem of their own).
    """
    f = np.asarray(features, dtype=np.float64)
    n = f.shape[0] if f.ndim else 0
    if n < 2:
        return None
    f = f.reshape(n, -1)
    f = f[:, np.isfinite(f).all(axis=0)]
    d = f.shape[1]
    if d == 0:
        return None
    std = f.std(axis=0)
    rms = np.sqrt(np.mean(np.square(f), axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(rms > 0, std / np.where(rms > 0, rms, 1.0), 0.0)
    constant = int(np.count_nonzero(rel <= rtol))
    return {
        "rows": int(n),
        "features": int(d),
        "constant": constant,
        "share": constant / d,
        "max_relative_std": float(rel.max()),
    }


def _rows_differ(x) -> bool:
    """Whether the rows of the inputs ``x`` (array or dict of arrays) are not all identical."""
    parts = list(x.values()) if isinstance(x, dict) else (list(x) if isinstance(x, (list, tuple)) else [x])
    for arr in parts:
        a = np.asarray(arr)
        if len(a) > 1 and not (a == a[:1]).all():
            return True
    return False


def _take(x, n: int):
    if isinstance(x, dict):
        return {k: np.asarray(v[:n]) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v[:n]) for v in x]
    return np.asarray(x[:n])


def _numpy(value) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def _collapsing_batchnorm(backbone, x) -> str | None:
    """The first BatchNormalization layer whose inference output is near-constant while its input is not."""
    import keras

    from kerafine import transfer

    bns = transfer._batchnorm_layers(backbone)
    if not bns:
        return None
    try:
        probe = keras.Model(backbone.input, [t for bn in bns for t in (bn.input, bn.output)])
        outs = probe(x, training=False)
    except Exception:  # noqa: BLE001 - a BN layer outside the backbone's own graph (nested, shared): none named
        return None
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    for i, bn in enumerate(bns):
        before, after = feature_spread(_numpy(outs[2 * i])), feature_spread(_numpy(outs[2 * i + 1]))
        if before is None or after is None:
            continue
        if after["share"] >= CONSTANT_SHARE and before["share"] < CONSTANT_SHARE:
            return bn.name
    return None


def check_backbone(model, x, where: str) -> tuple[dict, str] | None:
    """``(values, message)`` when the backbone of ``model`` gives near-constant features on ``x``, else ``None``.

    ``x`` is a batch of inputs (its first :data:`PROBE_ROWS` rows are used);
    ``where`` names them in the message (e.g. ``"train_data"``). A model
    without a recognisable backbone, or inputs whose rows are all identical,
    are not judged (``None``).
    """
    from kerafine import transfer
    from kerafine.errors import KerafineError

    try:
        backbone = transfer.backbone_of(model)
    except KerafineError:
        return None
    x = _take(x, PROBE_ROWS)
    if not _rows_differ(x):
        return None
    # predict_on_batch: a compiled inference step, traced once per backbone (an eager call costs ~10x more per epoch).
    spread = feature_spread(_numpy(backbone.predict_on_batch(x)))
    if spread is None or spread["share"] < CONSTANT_SHARE:
        return None
    bns = transfer._batchnorm_layers(backbone)
    values: dict[str, Any] = dict(
        spread,
        backbone=backbone.name,
        relative_std_threshold=RELATIVE_STD,
        batchnorm_layers=len(bns),
        first_collapsing_batchnorm=None,
    )
    head = (
        f"the backbone {backbone.name!r} gives near-constant features: {spread['constant']} of {spread['features']} "
        f"have a standard deviation at most {RELATIVE_STD:g} x their RMS on {spread['rows']} rows of {where} "
        f"(largest relative std {spread['max_relative_std']:.2g}), so the head has nothing to learn from"
    )
    if bns:
        culprit = _collapsing_batchnorm(backbone, x)
        values["first_collapsing_batchnorm"] = culprit
        where_bn = (
            f"the first BatchNormalization layer whose output is constant while its input varies is {culprit!r}; "
            if culprit
            else ""
        )
        cause = (
            f"Likely cause: BatchNorm moving statistics that do not fit this data ({len(bns)} BatchNormalization "
            f"layers; {where_bn}kerafine runs backbone BatchNorm in inference mode). A backbone pretrained with "
            "another BatchNorm momentum (e.g. a MobileNetV2 trained with Keras's default momentum over too few "
            "steps) can show high training-mode accuracy and constant inference-mode features. Fix: re-estimate "
            "the BatchNorm moving statistics on your data (run the backbone with training=True over a few hundred "
            "batches, nothing else trainable), fine-tune with the BatchNorm layers trainable, or use a backbone "
            "saved in inference mode whose statistics match its training data."
        )
    else:
        cause = (
            "Likely cause: dead units (every ReLU output zero), inputs on a scale or in a preprocessing the "
            "backbone was not trained for, or broken weights. Fix: check the backbone's expected preprocessing "
            "and its weights, and inspect its layer outputs on a few rows."
        )
    return values, f"{head}. {cause}"


def predicted_classes(scores, from_logits: bool = False) -> np.ndarray:
    """Classes from model outputs: arg-max of ``(n, k)`` with ``k > 1``, else the single output at 0.5 (0 for logits)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] > 1:
        return np.argmax(s, axis=1)
    return (s.reshape(len(s)) >= (0.0 if from_logits else 0.5)).astype(np.int64)


def _label_classes(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    return y.reshape(len(y))


def one_class(scores, y=None, from_logits: bool = False, where: str = "validation") -> tuple[dict, str] | None:
    """``(values, message)`` when every row of ``scores`` gets one predicted class, else ``None``.

    Not flagged when the labels ``y`` (if given) hold a single class
    themselves, or when there are no rows.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return None
    finite = np.isfinite(s.reshape(len(s), -1)).all(axis=1)
    if not finite.any():
        return None
    classes = predicted_classes(s[finite], from_logits)
    if len(np.unique(classes)) > 1:
        return None
    labels = None
    if y is not None:
        labels = _label_classes(y)[finite]
        if len(np.unique(labels)) < 2:
            return None
    c = int(classes[0])
    flat = s[finite].reshape(int(finite.sum()), -1)
    top = flat.max(axis=1) if flat.shape[1] > 1 else flat[:, 0]
    lo, hi = float(top.min()), float(top.max())
    same = hi - lo <= 1e-6 * max(1.0, abs(hi), abs(lo))
    values: dict[str, Any] = {
        "predicted_class": c,
        "rows": int(finite.sum()),
        "score_min": lo,
        "score_max": hi,
        "same_score": bool(same),
    }
    text = f"the model predicts class {c} for all {int(finite.sum())} {where} rows"
    if labels is not None:
        uniq, counts = np.unique(labels, return_counts=True)
        values["label_counts"] = {str(u.item() if hasattr(u, "item") else u): int(k) for u, k in zip(uniq, counts)}
        majority = float(counts.max() / counts.sum())
        values["majority_baseline"] = majority
        text += (
            f" although their labels hold {len(uniq)} classes ({values['label_counts']}): its accuracy is at "
            f"best the majority-class baseline {majority:.3g}"
        )
    if same:
        text += (
            f"; every row gets the same score {hi:.4g}: a dead model (constant backbone features, non-finite "
            "inputs or weights, saturated units). Try: check the inputs with np.isfinite, the backbone's "
            "features (BatchNorm statistics), a lower learning rate"
        )
    else:
        text += (
            f"; scores range {lo:.4g}..{hi:.4g}, all on one side of the decision threshold: a minority class "
            'the model never picks. Try: class_weight="balanced", a lower or higher learning rate, more '
            "epochs; with rare positives judge ROC-AUC and pick a threshold rather than 0.5"
        )
    return values, text + "."


def from_logits_of(loss) -> bool:
    """Whether a Keras loss (name or object) takes logits."""
    if loss is None or isinstance(loss, str):
        return False
    try:
        return bool(loss.get_config().get("from_logits", False))
    except Exception:  # noqa: BLE001 - a plain function as loss: probabilities
        return False


def is_classification_loss(loss) -> bool:
    """Whether ``loss`` (a name, a Loss object or a function) is a cross-entropy / hinge classification loss."""
    if loss is None:
        return False
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    name = str(name).lower()
    return "crossentropy" in name or "hinge" in name or "focal" in name
