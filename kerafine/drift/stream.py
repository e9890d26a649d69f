"""Drift detection on a monitored scalar series: ADWIN and Page-Hinkley.

Feed one value at a time (a batch loss, an error indicator, a score) and
learn when its level changes. Semantics follow river's ``drift.ADWIN`` and
``drift.PageHinkley``: the same parameters and defaults, ADWIN's cut bound
``|mean0 - mean1| > sqrt(2 m v d') + 2/3 d' m`` with ``m = 1/(n0 - L + 1) +
1/(n1 - L + 1)``, ``d' = ln(2 ln(W) / delta)`` and ``v`` the window's variance,
checked every ``clock`` values once the window holds more than
``grace_period`` values, and a fresh window after each detection (river 0.26:
the value after a detection starts a new window); Page-Hinkley's forgetting
cumulative sums, restarted after each alarm. river's own drift tests run
against this class in kerafine's conformance suite (``tests/conformance``;
river is a test-only dependency). Deliberate differences for ADWIN: the
window is kept exactly (every split point is examined, not only the
exponential-histogram bucket boundaries, so it reacts at least as early, and
at a large ``delta`` such as 0.1 raises more false alarms than river), it is
bounded by ``max_window`` values, so memory is fixed, and ``n_detections``
counts every detection since the detector was created (river's restarts it
with the window). See the README, "Differences from Keras / scikit-learn /
river".

Example:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> stream = np.concatenate([rng.normal(0, 1, 1000), rng.normal(2, 1, 500)])
>>> det = StreamDriftDetector("adwin")
>>> hits = det.update_many(stream)
>>> bool(1000 <= hits[0] < 1100), det.n_detections >= 1
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from kerafine.errors import check_int, check_number, invalid_argument

__all__ = ["StreamDriftDetector"]

_DEFAULTS = {
    "adwin": {"delta": 0.002, "clock": 32, "min_window_length": 5, "grace_period": 10, "max_window": 10_000},
    "page_hinkley": {"delta": 0.005, "threshold": 50.0, "alpha": 1 - 0.0001, "min_instances": 30, "mode": "both"},
}


class StreamDriftDetector:
    """Detect a change in the level of a scalar stream.

    Args:
        method: ``"adwin"`` (ADaptive WINdowing, Bifet and Gavalda 2007: keeps
            the longest recent window whose two halves' means do not differ by
            more than a Hoeffding/Bernstein bound at confidence ``delta``) or
            ``"page_hinkley"`` (cumulative deviation from the running mean
            beyond ``threshold``). Defaults to ``"adwin"``.
        delta: ADWIN: confidence of the cut test (smaller = fewer false
            alarms, later detection), defaults to 0.002. Page-Hinkley: the
            tolerated drift magnitude, defaults to 0.005.
        clock: ADWIN: test for a cut every ``clock`` values (counted from the
            last restart). Defaults to 32.
        min_window_length: ADWIN: fewest values on each side of a cut. Defaults to 5.
        grace_period: ADWIN: no test until the window holds more than this
            many values (counted again after each detection). Defaults to 10.
        max_window: ADWIN: most values kept (the oldest are dropped).
            Defaults to 10,000.
        threshold: Page-Hinkley: alarm when the cumulative deviation exceeds
            it, in the units of the series. Defaults to 50.
        alpha: Page-Hinkley: forgetting factor of the cumulative sums.
            Defaults to 0.9999.
        min_instances: Page-Hinkley: values seen before any alarm. Defaults to 30.
        mode: Page-Hinkley: ``"up"``, ``"down"`` or ``"both"`` directions.
            Defaults to ``"both"``.

    Raises:
        KerafineError: for an unknown method, a parameter of the other method,
            or a value out of range.
    """

    def __init__(
        self,
        method: str = "adwin",
        *,
        delta: float | None = None,
        clock: int | None = None,
        min_window_length: int | None = None,
        grace_period: int | None = None,
        max_window: int | None = None,
        threshold: float | None = None,
        alpha: float | None = None,
        min_instances: int | None = None,
        mode: str | None = None,
    ):
        if method not in _DEFAULTS:
            raise invalid_argument("method", method, '"adwin" or "page_hinkley"')
        given = {
            "delta": delta,
            "clock": clock,
            "min_window_length": min_window_length,
            "grace_period": grace_period,
            "max_window": max_window,
            "threshold": threshold,
            "alpha": alpha,
            "min_instances": min_instances,
            "mode": mode,
        }
        for name, value in given.items():
            if value is not None and name not in _DEFAULTS[method]:
                raise invalid_argument(
                    name, value, f"None with method={method!r} (it is a parameter of the other method)"
                )
        params = {k: (given[k] if given[k] is not None else v) for k, v in _DEFAULTS[method].items()}
        _validate(method, params)
        self.method = method
        self.params = params
        self._reset()

    def _reset(self) -> None:
        self.n_seen = 0
        self.detections: list[int] = []
        self.drift_detected = False
        if self.method == "adwin":
            cap = self.params["max_window"]
            self._buf = np.empty(cap, dtype=np.float64)
            self._adwin_restart()
        else:
            self._ph_reset()

    def _adwin_restart(self) -> None:
        self._start = 0  # ring buffer of the window
        self._width = 0
        self._tick = 0  # values since the last restart, for `clock`

    def _ph_reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum_up = 0.0
        self._sum_down = 0.0
        self._min_up = math.inf
        self._max_down = -math.inf

    # ------------------------------------------------------------- public
    @property
    def n_detections(self) -> int:
        """How many changes were detected so far."""
        return len(self.detections)

    @property
    def width(self) -> int:
        """Values in ADWIN's current window (values since the last reset for Page-Hinkley)."""
        return self._width if self.method == "adwin" else self._n

    @property
    def estimation(self) -> float:
        """Mean of the current window (ADWIN) or of the values since the last alarm (Page-Hinkley)."""
        if self.method == "adwin":
            return float(self._window().mean()) if self._width else math.nan
        return self._mean if self._n else math.nan

    def update(self, x: float) -> bool:
        """Add one value; returns True if a change is detected at this value."""
        try:
            x = float(x)
        except (TypeError, ValueError):
            raise invalid_argument("x", x, "a real number") from None
        if not math.isfinite(x):
            raise invalid_argument("x", x, "a finite number", "Drop or impute NaN/inf values before monitoring them.")
        self.n_seen += 1
        hit = self._adwin(x) if self.method == "adwin" else self._page_hinkley(x)
        self.drift_detected = hit
        if hit:
            self.detections.append(self.n_seen - 1)
        return hit

    def update_many(self, values) -> list[int]:
        """Feed a sequence; returns the 0-based positions (in this call) where changes were detected."""
        start = self.n_seen
        before = len(self.detections)
        for v in np.asarray(values, dtype=np.float64).ravel():
            self.update(v)
        return [i - start for i in self.detections[before:]]

    # ---------------------------------------------------------- Page-Hinkley
    def _page_hinkley(self, x: float) -> bool:
        p = self.params
        if self.drift_detected:  # as river: start afresh after an alarm
            self._ph_reset()
        self._n += 1
        self._mean += (x - self._mean) / self._n
        dev = x - self._mean
        self._sum_up = p["alpha"] * self._sum_up + dev - p["delta"]
        self._sum_down = p["alpha"] * self._sum_down + dev + p["delta"]
        self._min_up = min(self._min_up, self._sum_up)
        self._max_down = max(self._max_down, self._sum_down)
        if self._n < p["min_instances"]:
            return False
        up = self._sum_up - self._min_up > p["threshold"]
        down = self._max_down - self._sum_down > p["threshold"]
        return (up and p["mode"] in ("up", "both")) or (down and p["mode"] in ("down", "both"))

    # ----------------------------------------------------------------- ADWIN
    def _window(self) -> np.ndarray:
        cap = self._buf.size
        idx = (self._start + np.arange(self._width)) % cap
        return self._buf[idx]

    def _adwin(self, x: float) -> bool:
        p = self.params
        cap = self._buf.size
        if self.drift_detected:
            # As river (>= 0.19): after a detection the next value starts a new
            # window, so one change is reported once, not again at each later
            # check while the shrunken window still straddles it.
            self._adwin_restart()
        if self._width == cap:  # bounded memory: forget the oldest value
            self._start = (self._start + 1) % cap
            self._width -= 1
        self._buf[(self._start + self._width) % cap] = x
        self._width += 1
        self._tick += 1
        # As river: test every `clock` values, once the window holds more than `grace_period`.
        if self._tick % p["clock"] != 0 or self._width <= p["grace_period"]:
            return False
        detected = False
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            detected = True
            # Drop the older sub-window; repeat until no split differs.
            self._start = (self._start + cut) % cap
            self._width -= cut
        return detected

    def _find_cut(self):
        """Largest split point whose two sides' means differ beyond ADWIN's bound, or None."""
        p = self.params
        w = self._width
        k = p["min_window_length"]
        if w < 2 * k:
            return None
        win = self._window()
        csum = np.cumsum(win)
        total = csum[-1]
        variance = float(win.var())
        n0 = np.arange(k, w - k + 1, dtype=np.float64)  # older side sizes
        s0 = csum[k - 1 : w - k]
        n1 = w - n0
        mean0 = s0 / n0
        mean1 = (total - s0) / n1
        # river's bound: harmonic size with min_window_length slack, delta' = ln(2 ln(W) / delta).
        m_recip = 1.0 / (n0 - k + 1) + 1.0 / (n1 - k + 1)
        delta_prime = math.log(2.0 * math.log(w) / p["delta"])
        eps = np.sqrt(2.0 * m_recip * variance * delta_prime) + (2.0 / 3.0) * delta_prime * m_recip
        hits = np.flatnonzero(np.abs(mean0 - mean1) > eps)
        if hits.size == 0:
            return None
        return int(n0[hits[-1]])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"StreamDriftDetector({self.method!r}, {args})"


def _validate(method: str, p: dict) -> None:
    def pos_int(name, minimum=1):
        check_int(name, p[name], minimum=minimum)

    def pos_float(name, upper=None):
        expected = "a positive float" + (f" below {upper}" if upper else "")
        check_number(
            name, p[name], minimum=0, min_inclusive=False, maximum=upper, max_inclusive=False, expected=expected
        )

    if method == "adwin":
        pos_float("delta", upper=1.0)
        pos_int("clock")
        pos_int("min_window_length")
        pos_int("grace_period", minimum=0)
        pos_int("max_window", minimum=2 * p["min_window_length"])
    else:
        pos_float("delta")
        pos_float("threshold")
        pos_float("alpha", upper=1.0 + 1e-12)
        pos_int("min_instances")
        if p["mode"] not in ("up", "down", "both"):
            raise invalid_argument("mode", p["mode"], '"up", "down" or "both"')
