"""The security sections of ``kerafine.evaluate`` (robustness and membership), kept here so the
evaluation module only calls two functions."""

from __future__ import annotations

import dataclasses

from kerafine.errors import invalid_argument
from kerafine.security.robustness import check_epsilons, split_data

__all__ = ["check_options", "add_sections"]


def check_options(data, robustness, membership) -> None:
    """Fail before any prediction on a bad ``robustness`` or ``membership`` argument."""
    if robustness is not None:
        check_epsilons(robustness, "robustness")
        if not (isinstance(data, tuple) and len(data) in (2, 3)):
            raise invalid_argument(
                "data",
                type(data).__name__,
                "(x, y) arrays when robustness is asked (attacks need the inputs in memory)",
            )
    if membership is not None:
        if not (isinstance(membership, (tuple, list)) and len(membership) == 2):
            raise invalid_argument(
                "membership", type(membership).__name__, "a pair (train_data, holdout_data) of (x, y) tuples"
            )
        split_data(membership[0], "membership[0] (train_data)")
        split_data(membership[1], "membership[1] (holdout_data)")


def add_sections(report, model, data, *, robustness=None, membership=None, batch_size: int = 256, level: float = 0.95):
    """``report`` with its ``robustness`` and ``membership`` sections filled in."""
    from kerafine.security.membership import membership_inference
    from kerafine.security.robustness import robustness_curve

    sections = {}
    if robustness is not None:
        threshold = report.threshold if report.kind == "binary" else None
        sections["robustness"] = robustness_curve(
            model, data[:2], robustness, threshold=threshold, level=level, batch_size=batch_size
        )
    if membership is not None:
        sections["membership"] = membership_inference(
            model, membership[0], membership[1], level=level, batch_size=batch_size
        )
    return dataclasses.replace(report, **sections)
