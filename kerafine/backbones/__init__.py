"""Backbones: pretrained (or pretrainable) feature extractors to put a new head on.

Every builder returns a functional ``keras.Model`` whose output is the feature
tensor, so it can be called as a layer on new inputs and saved to ``.keras``:

- :func:`vision`: any ``keras.applications`` model, headless, with its own
  ``preprocess_input`` inside (raw 0-255 images in); :func:`list_backbones`.
- :func:`sequence_encoder` / :func:`pretrain_sequence_encoder`: stacked LSTM/GRU
  encoders for metric windows, pretrained self-supervised on unlabeled windows.
- :func:`tabular_encoder`: numeric + categorical columns through Keras
  preprocessing layers adapted on the training data.
- :func:`from_model`: your own pretrained Keras model, cut at a named layer.

Importing this package registers kerafine's custom layers, which
``keras.models.load_model`` needs for files that contain them.
"""

from kerafine.backbones.existing import from_model
from kerafine.backbones.sequence import pretrain_sequence_encoder, sequence_encoder
from kerafine.backbones.tabular import tabular_encoder
from kerafine.backbones.vision import ImagenetPreprocessing, list_backbones, vision

__all__ = [
    "ImagenetPreprocessing",
    "from_model",
    "list_backbones",
    "pretrain_sequence_encoder",
    "sequence_encoder",
    "tabular_encoder",
    "vision",
]
