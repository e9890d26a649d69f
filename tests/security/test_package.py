"""kerafine.security is public, lazy, and the metrics report it extends still loads without TensorFlow."""

import subprocess
import sys
import textwrap

import kerafine


def test_security_is_a_public_lazy_submodule():
    assert "security" in kerafine.__all__
    from kerafine import callbacks, security
    from kerafine.security import attacks

    assert security.fgsm is attacks.fgsm and security.SecurityMonitor is callbacks.SecurityMonitor
    assert {"fgsm", "pgd", "robustness_curve", "membership_inference", "InputGuard", "SecurityMonitor"} <= set(
        security.__all__
    )


def test_the_metrics_report_with_its_new_sections_still_loads_without_tensorflow():
    code = textwrap.dedent("""
        import sys
        from kerafine.metrics import classification_report
        report = classification_report([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.5)
        assert report.robustness is None and "robustness" not in report.to_dict()
        import kerafine.security
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
