"""The registry of ``keras.applications`` vision backbones.

The registry is built from what ``keras.applications`` exports, so a Keras
upgrade that adds a variant of a known family (another EfficientNet size, say)
shows up without a code change. What Keras does not state in a machine-readable
way is kept in one table per family: how ``preprocess_input`` scales pixels and
the smallest input side the constructor accepts (Keras's own
``obtain_input_shape(min_size=...)``; ``tests/backbones/test_registry.py``
checks the table against the Keras constructors).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
import types
from collections.abc import Callable, Mapping

from kerafine.errors import did_you_mean, invalid_argument

__all__ = ["BackboneSpec", "list_backbones", "get_spec"]

# Family (the module under keras.applications) -> (preprocessing mode, min side).
# "builtin": the Keras model already rescales raw 0-255 pixels itself and the
# family's preprocess_input is the identity (ConvNeXt, EfficientNet, MobileNetV3).
_FAMILIES: dict[str, tuple[str, int]] = {
    "convnext": ("builtin", 32),
    "densenet": ("torch", 32),
    "efficientnet": ("builtin", 32),
    "efficientnet_v2": ("builtin", 32),
    "inception_resnet_v2": ("tf", 75),
    "inception_v3": ("tf", 75),
    "mobilenet": ("tf", 32),
    "mobilenet_v2": ("tf", 32),
    "mobilenet_v3": ("builtin", 32),
    "nasnet": ("tf", 32),
    "resnet": ("caffe", 32),
    "resnet_v2": ("tf", 32),
    "vgg16": ("caffe", 32),
    "vgg19": ("caffe", 32),
    "xception": ("tf", 71),
}

# Families whose Keras constructor takes `include_preprocessing`.
_HAS_INCLUDE_PREPROCESSING = {"convnext", "efficientnet_v2", "mobilenet_v3"}

_TOKEN = re.compile(r"ConvNeXt|NASNet|VGG|[A-Z][a-z]+(?:Net)?|V\d+|B\d+|\d+|[A-Z]")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What kerafine knows about one ``keras.applications`` model.

    Attributes:
        name: canonical lower-case name, e.g. ``"mobilenet_v2"``.
        constructor: the ``keras.applications`` function name, e.g. ``"MobileNetV2"``.
        family: the ``keras.applications`` submodule holding its ``preprocess_input``.
        preprocessing: ``"caffe"``, ``"tf"``, ``"torch"`` (the modes of
            ``keras.applications.imagenet_utils.preprocess_input``) or
            ``"builtin"`` when the Keras model rescales raw pixels itself.
        min_size: smallest accepted input height and width.
        channels: required channel count (these are RGB ImageNet architectures).
    """

    name: str
    constructor: str
    family: str
    preprocessing: str
    min_size: int
    channels: int = 3

    @property
    def builder(self) -> Callable:
        """The ``keras.applications`` constructor."""
        import keras

        return getattr(keras.applications, self.constructor)

    @property
    def preprocess_input(self) -> Callable:
        """The family's ``keras.applications.<family>.preprocess_input``."""
        return importlib.import_module(f"keras.applications.{self.family}").preprocess_input

    @property
    def accepts_include_preprocessing(self) -> bool:
        return self.family in _HAS_INCLUDE_PREPROCESSING


def _snake_name(constructor: str) -> str:
    """``"MobileNetV3Small"`` -> ``"mobilenet_v3_small"``, ``"VGG16"`` -> ``"vgg16"``."""
    parts: list[str] = []
    for token in _TOKEN.findall(constructor):
        if token.isdigit() and parts:
            parts[-1] += token
        else:
            parts.append(token.lower())
    return "_".join(parts)


def _compact(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[Mapping[str, BackboneSpec], Mapping[str, str]]:
    """``(name -> spec, compact alias -> name)``, built once from the installed Keras (read-only)."""
    import keras

    registry: dict[str, BackboneSpec] = {}
    for attr in dir(keras.applications):
        builder = getattr(keras.applications, attr)
        if not (attr[:1].isupper() and callable(builder)):
            continue
        family = builder.__module__.rsplit(".", 1)[-1]
        if family not in _FAMILIES:
            # A family this kerafine version does not know the preprocessing of.
            continue
        preprocessing, min_size = _FAMILIES[family]
        spec = BackboneSpec(
            name=_snake_name(attr),
            constructor=attr,
            family=family,
            preprocessing=preprocessing,
            min_size=min_size,
        )
        registry[spec.name] = spec
    aliases = {_compact(spec.name): spec.name for spec in registry.values()}
    return types.MappingProxyType(registry), types.MappingProxyType(aliases)


def _registry() -> Mapping[str, BackboneSpec]:
    return _tables()[0]


def list_backbones() -> list[str]:
    """List the names :func:`kerafine.backbones.vision` accepts.

    Returns:
        Sorted canonical names such as ``"efficientnet_b0"``, ``"mobilenet_v2"``,
        ``"resnet50"``, ``"vgg16"``. Lookups are case-insensitive and ignore
        underscores, so ``"MobileNetV2"`` and ``"mobilenetv2"`` also work.

    Example:

    >>> from kerafine.backbones import list_backbones
    >>> "vgg16" in list_backbones() and "mobilenet_v2" in list_backbones()
    True
    """
    return sorted(_registry())


def get_spec(name: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` of a backbone name (case-insensitive).

    Raises:
        KerafineError: if ``name`` is not a known backbone; the message suggests
            close names.
    """
    registry, aliases = _tables()
    if isinstance(name, str):
        canonical = aliases.get(_compact(name))
        if canonical is not None:
            return registry[canonical]
    compact = _compact(name) if isinstance(name, str) else str(name)
    # A family name alone ("mobilenet_v3", "efficientnet") gets its variants.
    variants = sorted(c for a, c in aliases.items() if compact and a.startswith(compact))
    if variants:
        quoted = [f'"{v}"' for v in variants[:3]]
        suggestion = (
            " Did you mean " + (quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]) + "?"
        )
    else:
        suggestion = did_you_mean(compact, aliases)
    # did_you_mean matched against compact aliases: show canonical names instead.
    for alias, canonical in aliases.items():
        suggestion = suggestion.replace(f'"{alias}"', f'"{canonical}"')
    raise invalid_argument(
        "name",
        name,
        "the name of a keras.applications model; see kerafine.backbones.list_backbones()",
        hint=suggestion.strip() or None,
    )
