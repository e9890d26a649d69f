"""kerafine.drift must work in a process that never loads TensorFlow or Keras."""

import subprocess
import sys
import textwrap


def test_drift_import_and_check_leave_tensorflow_and_keras_unloaded(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import kerafine.drift
        from kerafine.drift import DriftDetector, ReferenceProfile, StreamDriftDetector, mmd_test
        from kerafine.cli.drift import run
        rng = np.random.default_rng(0)
        prof = ReferenceProfile.from_data(rng.normal(size=(200, 3)))
        prof.save({str(tmp_path / "p")!r})
        report = DriftDetector(ReferenceProfile.load({str(tmp_path / "p")!r})).check(rng.normal(size=(50, 3)))
        report.to_json()
        StreamDriftDetector().update_many(rng.normal(size=100))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print("LOADED", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
