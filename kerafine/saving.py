"""Load a model saved from kerafine, with everything kerafine needs in place.

``keras.models.load_model`` alone fails on a file that holds one of
kerafine's registered objects (the ``ImagenetPreprocessing`` layer, the
calibration layers of :func:`kerafine.calibrate`, the ``OneCycle`` / ``WarmupCosineDecay`` schedules) unless the module that registers
them was imported first, and it returns a transfer model whose backbone again
follows the outer ``training`` flag (Keras 3 overrides a recorded
``training=False``; see :mod:`kerafine.transfer`). :func:`load_model` does both.
"""

from __future__ import annotations

import os

__all__ = ["load_model"]


def load_model(path, compile: bool = True, safe_mode: bool = True):
    """Load a ``.keras`` file saved from a kerafine model.

    Args:
        path: path to a ``.keras`` file.
        compile: whether to restore the compiled loss, metrics and optimizer.
            Defaults to ``True``.
        safe_mode: refuse ``Lambda`` layers and other arbitrary code, as
            Keras does. Defaults to ``True``.

    Returns:
        The ``keras.Model``; a transfer model gets its backbone pinned to
        inference mode again, so a later ``fit`` leaves BatchNorm statistics
        and backbone Dropout alone.

    Raises:
        KerafineError: if ``path`` does not exist or is not a ``.keras`` file.

    Example:

    >>> import tempfile, os, keras, kerafine
    >>> from kerafine import backbones, heads
    >>> encoder = backbones.sequence_encoder((5, 2), units=(4,))
    >>> model = kerafine.build_transfer_model(encoder, heads.classification(2))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> model.save(path)
    >>> kerafine.load_model(path).output.shape
    (None, 1)
    """
    from kerafine.errors import invalid_argument

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(".keras"):
        raise invalid_argument("path", path, "the path of a .keras file")
    if not os.path.isfile(path):
        raise invalid_argument("path", os.fspath(path), "an existing .keras file", "No file exists there.")

    import keras

    # Imported for their side effect: they register kerafine's serialisable objects.
    import kerafine.backbones  # noqa: F401
    import kerafine.calibration  # noqa: F401
    import kerafine.schedules  # noqa: F401
    from kerafine import transfer

    model = keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
    transfer._pin_recorded_inference(model)
    return model
