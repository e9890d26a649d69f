"""Image backbones: any ``keras.applications`` model, headless, ready for a new head."""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from kerafine.backbones._checks import check_choice
from kerafine.backbones._registry import BackboneSpec, get_spec, list_backbones
from kerafine.errors import KerafineError, WeightsError, invalid_argument

__all__ = ["vision", "list_backbones", "ImagenetPreprocessing"]

# ImageNet statistics used by keras.applications.imagenet_utils.preprocess_input.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_MODES = ("caffe", "tf", "torch")


@keras.saving.register_keras_serializable(package="kerafine")
class ImagenetPreprocessing(keras.layers.Layer):
    """``keras.applications`` ``preprocess_input`` as a layer, so it lives in the model.

    Computes exactly what ``keras.applications.imagenet_utils.preprocess_input``
    computes for channels-last images with raw 0-255 values:

    - ``"caffe"`` (VGG, ResNet): RGB to BGR, then subtract the ImageNet channel means;
    - ``"tf"`` (MobileNet, Inception, Xception, ResNetV2, NASNet): scale to [-1, 1];
    - ``"torch"`` (DenseNet): scale to [0, 1], then standardise with the ImageNet
      channel means and standard deviations.

    The layer has no weights, so weight files of a model with and without it are
    interchangeable. It is registered as ``"kerafine>ImagenetPreprocessing"``:
    import ``kerafine.backbones`` before ``keras.models.load_model`` on a file
    that contains it.

    Args:
        mode: ``"caffe"``, ``"tf"`` or ``"torch"``.
        **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example:

    >>> import numpy as np
    >>> layer = ImagenetPreprocessing("tf")
    >>> np.asarray(layer(np.array([[[[0.0, 127.5, 255.0]]]]))).round(3).tolist()
    [[[[-1.0, 0.0, 1.0]]]]
    """

    def __init__(self, mode: str, **kwargs: Any):
        super().__init__(**kwargs)
        check_choice("mode", mode, _MODES)
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["mode"] = self.mode
        return config


def _check_input_shape(spec: BackboneSpec, input_shape: Any) -> tuple[int | None, int | None, int]:
    expected = (
        f"(height, width, channels) with height and width >= {spec.min_size} (or None for "
        f"any size) and {spec.channels} channels for {spec.name}"
    )

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(v is None or is_int(v) for v in input_shape[:2])
        or not is_int(input_shape[2])
    ):
        raise invalid_argument("input_shape", input_shape, expected)
    height, width, channels = (None if v is None else int(v) for v in input_shape)
    if any(side is not None and side < spec.min_size for side in (height, width)):
        raise invalid_argument(
            "input_shape",
            input_shape,
            expected,
            hint=f"{spec.name} needs images of at least {spec.min_size}x{spec.min_size}; "
            "resize them (keras.layers.Resizing) or pick a backbone with a smaller minimum.",
        )
    if channels != spec.channels:
        hint = "Backbones from keras.applications are RGB architectures."
        if channels == 1:
            hint += " Repeat a grayscale channel three times, e.g. np.repeat(x, 3, axis=-1)."
        raise invalid_argument("input_shape", input_shape, expected, hint=hint)
    return height, width, channels


def _check_weights(weights: Any) -> str | None:
    """Return ``None``, ``"imagenet"`` or an existing local path; raise otherwise."""
    expected = '"imagenet", None, or the path of an existing .h5 / .weights.h5 weights file'
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return "imagenet"
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not path.endswith(".h5"):
            raise invalid_argument("weights", weights, expected, error=WeightsError)
        if not os.path.isfile(path):
            raise invalid_argument("weights", weights, expected, hint="That file does not exist.", error=WeightsError)
        return path
    raise invalid_argument("weights", weights, expected, error=WeightsError)


def _is_download_failure(error: BaseException) -> bool:
    # keras.utils.get_file turns URLError/HTTPError into a bare Exception with this
    # text; a half-downloaded file fails its hash check with a ValueError.
    text = str(error)
    return (
        isinstance(error, (OSError, ConnectionError, TimeoutError))
        or text.startswith("URL fetch failure")
        or "file hash does not match" in text
    )


def _imagenet_error(spec: BackboneSpec, error: BaseException) -> WeightsError:
    from kerafine._keras_compat import keras_home  # where get_file caches

    cache = os.path.join(keras_home(), "models")
    match = re.search(r"(https?://\S+?)(?::\s|\s|$)", str(error))
    url = match.group(1) if match else None
    where = f"the file {url}" if url else "the ImageNet weights file of this model"
    return WeightsError(
        f'Could not fetch the ImageNet weights of "{spec.name}" for argument `weights` '
        f'(received "imagenet"): {error}. To work offline, download {where} on a machine '
        f"with network access, then either copy it into the Keras cache directory {cache} "
        f"(Keras looks there first) or pass its path: "
        f'kerafine.backbones.vision("{spec.name}", weights="/path/to/file.h5", ...).'
    )


def vision(
    name: str,
    weights: str | os.PathLike | None = "imagenet",
    input_shape: tuple[int, int, int] = (224, 224, 3),
    pooling: str | None = "avg",
    include_preprocessing: bool = True,
) -> keras.Model:
    """Build a headless ``keras.applications`` backbone that outputs features.

    The returned model is one flat functional graph (raw image input, optional
    preprocessing layer, the architecture's layers, pooling), so freezing by layer
    name or by number of top layers sees every layer of the architecture. Call it on
    a new ``keras.Input`` to put it inside a larger model.

    Args:
        name: a ``keras.applications`` model, case-insensitive and ignoring
            underscores: ``"vgg16"``, ``"vgg19"``, ``"resnet50"``, ``"mobilenet_v2"``,
            ``"efficientnet_b0"``, ... (see :func:`list_backbones`).
        weights: ``"imagenet"`` (Keras downloads the file once and caches it under
            ``~/.keras/models``; a cached file is used offline), the path of a local
            ``.h5`` / ``.weights.h5`` file (the Keras ``*_notop.h5`` ImageNet file,
            or weights saved from a backbone of the same architecture), or ``None``
            for random initialisation. Defaults to ``"imagenet"``.
        input_shape: ``(height, width, 3)``, channels last; height and width must be
            at least the family's minimum (32, or 71 for Xception, 75 for
            InceptionV3 / InceptionResNetV2), or ``None`` for images of any size
            (batches must still share one size). Defaults to ``(224, 224, 3)``.
        pooling: ``"avg"`` or ``"max"`` for a rank-2 ``(batch, features)`` output,
            or ``None`` for the last rank-4 feature map. Defaults to ``"avg"``.
        include_preprocessing: put the family's ``preprocess_input`` inside the
            model, so it takes raw 0-255 RGB images. With ``False`` feed it
            ``keras.applications.<family>.preprocess_input(images)``. (ConvNeXt,
            EfficientNet and MobileNetV3 always rescale inside the Keras model,
            their ``preprocess_input`` being the identity, so both settings take raw
            pixels for them.) Defaults to ``True``.

    Returns:
        A ``keras.Model`` mapping ``(batch, height, width, 3)`` images to features:
        ``(batch, channels)`` when pooled.

    Raises:
        KerafineError: unknown ``name`` (with close-name suggestions), bad
            ``input_shape`` (too small, not 3 channels), bad ``pooling``.
        WeightsError: ``weights`` is a path that does not exist, is not ``.h5``, or
            holds weights of another architecture; ``"imagenet"`` cannot be fetched
            (offline and not cached): the message says where to put a local copy.

    Example:

    >>> import numpy as np
    >>> from kerafine.backbones import vision
    >>> backbone = vision("vgg16", weights=None, input_shape=(32, 32, 3))
    >>> backbone(np.zeros((2, 32, 32, 3))).shape
    TensorShape([2, 512])
    """
    spec = get_spec(name)
    if keras.backend.image_data_format() != "channels_last":
        raise KerafineError(
            'kerafine vision backbones need keras.backend.image_data_format() == "channels_last"; '
            f"it is {keras.backend.image_data_format()!r} (see ~/.keras/keras.json)."
        )
    shape = _check_input_shape(spec, input_shape)
    check_choice("pooling", pooling, ("avg", "max", None))
    if not isinstance(include_preprocessing, bool):
        raise invalid_argument("include_preprocessing", include_preprocessing, "True or False")
    weights = _check_weights(weights)

    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    if include_preprocessing and spec.preprocessing in _MODES:
        x = ImagenetPreprocessing(spec.preprocessing, name="preprocessing")(x)
    kwargs: dict[str, Any] = dict(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_tensor=x,
        input_shape=shape,
        pooling=pooling,
    )
    if spec.accepts_include_preprocessing:
        # Their preprocess_input is the identity: the rescaling must stay inside.
        kwargs["include_preprocessing"] = True
    try:
        model = spec.builder(**kwargs)
    except Exception as error:
        if weights == "imagenet" and _is_download_failure(error):
            raise _imagenet_error(spec, error) from error
        raise
    if weights not in (None, "imagenet"):
        try:
            # Keras warns about each unmatched group before it raises; the error says it all.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(weights)
        except Exception as error:
            raise invalid_argument(
                "weights",
                weights,
                f"a weights file of the {spec.name} architecture (include_top=False)",
                hint=f"Keras could not load it: {str(error)[:400]}",
                error=WeightsError,
            ) from error
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    # Keras builds it from get_source_inputs(), a one-element list: rewrap it on the
    # bare Input so calling the backbone on a single tensor matches its structure.
    return keras.Model(inputs, model.output, name=model.name)
