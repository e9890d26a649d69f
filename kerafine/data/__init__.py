"""Data pipelines: sliding windows, server-metric CSVs, tabular CSVs and the embedded demo data.

Example:

>>> import numpy as np
>>> from kerafine.data import sliding_windows
>>> x, y = sliding_windows(np.zeros((10, 2)), window=4, horizon=1)
>>> x.shape, y.shape
((6, 4, 2), (6, 2))
"""

from __future__ import annotations

from kerafine._lazy import attach

# public name -> module; loaded on first use so `import kerafine.data` stays cheap
# and a module that is not there yet never breaks the import.
_LAZY = {
    "sliding_windows": "kerafine.data.windows",
    "load_server_metrics": "kerafine.data.server_metrics",
    "ServerMetrics": "kerafine.data.server_metrics",
    "split_by_time": "kerafine.data.splits",
    "split_by_group": "kerafine.data.splits",
    "Splits": "kerafine.data.splits",
    "Normalizer": "kerafine.data.splits",
    "load_tabular": "kerafine.data.tabular",
    "TabularData": "kerafine.data.tabular",
    "generate_fleet": "kerafine.data.demo",
    "load_digits_task": "kerafine.data.demo",
    "ResumableSequence": "kerafine.data.resumable",
    "check_label_classes": "kerafine.data.labels",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
