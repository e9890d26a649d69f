"""StreamDriftDetector: detection delay and false alarms of ADWIN and Page-Hinkley on seeded streams."""

import numpy as np
import pytest

from kerafine.drift import StreamDriftDetector
from kerafine.errors import KerafineError


def test_adwin_detects_a_one_sigma_mean_shift_quickly_and_rarely_false_alarms():
    delays, early = [], 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        stream = np.r_[rng.normal(0, 1, 1000), rng.normal(1, 1, 500)]
        hits = StreamDriftDetector("adwin").update_many(stream)
        early += sum(h < 1000 for h in hits)
        after = [h for h in hits if h >= 1000]
        assert after, f"seed {seed}: shift not detected"
        delays.append(after[0] - 1000)
    assert early <= 1  # delta=0.002 per check
    assert np.median(delays) <= 100 and max(delays) <= 200


def test_adwin_window_forgets_the_old_level():
    rng = np.random.default_rng(0)
    det = StreamDriftDetector("adwin")
    det.update_many(np.r_[rng.normal(0, 1, 2000), rng.normal(3, 1, 400)])
    assert det.estimation == pytest.approx(3.0, abs=0.3) and det.width < 600


def test_adwin_memory_is_bounded_by_max_window():
    det = StreamDriftDetector("adwin", max_window=200)
    det.update_many(np.random.default_rng(1).normal(size=1000))
    assert det.width <= 200 and det.n_seen == 1000


def test_page_hinkley_detects_an_increase_with_bounded_delay_and_no_false_alarm():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        quiet = rng.normal(0, 0.2, 3000)
        assert StreamDriftDetector("page_hinkley").update_many(quiet) == []
        stream = np.r_[quiet, rng.normal(1, 0.2, 300)]
        hits = StreamDriftDetector("page_hinkley").update_many(stream)
        assert hits and 3000 <= hits[0] <= 3000 + 80  # threshold 50 / shift 1 ~ 50 values


def test_page_hinkley_mode_selects_the_direction():
    rng = np.random.default_rng(0)
    down = np.r_[rng.normal(0, 0.2, 500), rng.normal(-1, 0.2, 300)]
    assert StreamDriftDetector("page_hinkley", mode="up").update_many(down) == []
    assert StreamDriftDetector("page_hinkley", mode="down").update_many(down)


def test_page_hinkley_restarts_after_an_alarm_as_river_does():
    rng = np.random.default_rng(0)
    det = StreamDriftDetector("page_hinkley")
    det.update_many(np.r_[rng.normal(0, 0.2, 500), rng.normal(2, 0.2, 100)])
    assert det.n_detections >= 1
    n_after = det.width
    det.update(2.0)
    assert det.width <= n_after + 1 and not det.drift_detected


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("kswin",), {}, "`method`: received 'kswin'"),
        (("adwin",), {"threshold": 10.0}, "`threshold`: received 10.0; expected None with method='adwin'"),
        (("page_hinkley",), {"clock": 4}, "`clock`: received 4; expected None with method='page_hinkley'"),
        (("adwin",), {"delta": 1.5}, "`delta`: received 1.5"),
        (("page_hinkley",), {"mode": "sideways"}, "`mode`: received 'sideways'"),
        (("adwin",), {"max_window": 4}, "`max_window`: received 4; expected an int >= 10"),
    ],
)
def test_bad_parameters(args, kwargs, match):
    with pytest.raises(KerafineError, match=match):
        StreamDriftDetector(*args, **kwargs)


def test_non_finite_values_are_refused():
    det = StreamDriftDetector()
    with pytest.raises(KerafineError, match="`x`: received nan; expected a finite number"):
        det.update(float("nan"))


# ------------------------------------------------ river's rules (issue 18)


def test_adwin_grace_period_needs_more_values_than_it_in_the_window():
    # Regression: kerafine tested once the window held grace_period values, river only beyond it.
    stream = [0.0] * 50 + [1000.0] * 50
    assert StreamDriftDetector("adwin", grace_period=100, clock=1).update_many(stream) == []
    assert StreamDriftDetector("adwin", grace_period=100, clock=1).update_many(stream + [1000.0]) == [100]


def test_adwin_tests_only_at_multiples_of_clock():
    # The first test after the grace period is at the next multiple of `clock` (128), not at value 101.
    stream = [0.0] * 60 + [1000.0] * 140
    assert StreamDriftDetector("adwin", grace_period=100, clock=32).update_many(stream) == [127]


def test_adwin_restarts_its_window_after_a_detection():
    # Regression: the shrunken window kept straddling the change and reported it again.
    det = StreamDriftDetector("adwin", clock=1)
    hits = det.update_many([0.0] * 500 + [100.0] * 30)
    assert hits == [500]  # once; the old code reported the same change again
    assert det.width == 29  # the values since the restart that followed the detection
    det.update(50.0)
    assert det.width == 30 and det.n_detections == 1 and det.n_seen == 531


def test_adwin_reports_river_documented_example_once_with_clock_1():
    # river 0.26.1's ADWIN docstring stream; river detects [1002] with clock=1 (kerafine used to add 1030).
    import random

    rng = random.Random(12345)
    stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    assert StreamDriftDetector("adwin", clock=1).update_many(stream) == [1002]
    assert StreamDriftDetector("adwin").update_many(stream) == [1023]
