"""The declared floor (setup.cfg), the versions CI tests as oldest (.ci/oldest.txt) and the README agree."""

import configparser
import pathlib
import re
from importlib import metadata

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _floors() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    floors = {}
    for line in cfg["options"]["install_requires"].split("\n"):
        match = re.fullmatch(r"\s*(keras|tensorflow)>=([\d.]+)\s*", line)
        if match:
            floors[match.group(1)] = match.group(2)
    return floors


def _oldest() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines():
        match = re.fullmatch(r"(keras|tensorflow)==([\d.]+)", line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def _version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))  # "3.12" == "3.12.0"


def test_ci_tests_exactly_the_declared_floor():
    floors = _floors()
    assert set(floors) == {"keras", "tensorflow"}, f"setup.cfg must declare keras>= and tensorflow>=: {floors}"
    # keras.distillation (issue 13) appeared in Keras 3.12.
    assert _version(floors["keras"]) >= (3, 12)
    oldest = _oldest()
    assert {k: _version(v) for k, v in oldest.items()} == {k: _version(v) for k, v in floors.items()}, (
        f".ci/oldest.txt pins {oldest} but setup.cfg declares {floors}: change both together"
    )


def test_readme_states_the_supported_range():
    floors = _floors()
    readme = (ROOT / "README.md").read_text()
    keras_floor = ".".join(floors["keras"].split(".")[:2])
    assert f"Keras >= {keras_floor}" in readme and f"TensorFlow >= {floors['tensorflow']}" in readme


def test_the_running_versions_are_within_the_declared_range():
    floors = _floors()
    for package, floor in floors.items():
        installed = metadata.version(package)
        assert _version(re.match(r"[\d.]+", installed).group(0).rstrip(".")) >= _version(floor), (package, installed)
