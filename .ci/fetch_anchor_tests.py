"""Extract river's tests/drift from its PyPI sdist for tests/conformance (install time, not test time).

river ships its tests only in the sdist. `pip download --no-binary river` cannot
save it without building it (maturin needs the Rust crate index just to read the
metadata), so this script lets pip find the pinned sdist on the index pip is
configured with (pip's own look-up, read from its `-vv` log), downloads that one
file, checks its sha256 against the value pinned here, and extracts only
tests/drift into .ci/cache/anchors/ (git-ignored). Re-running it is a no-op once
the files are there.

Usage: python3 .ci/fetch_anchor_tests.py [DESTINATION]
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "river", "0.26.1"  # the version pinned in setup.cfg's `test` extra
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SHA256 = "2326f87f396801cfd8672ac02d9f9731c10e936696e7a0a1f89a378b994fba3f"
MEMBERS = f"{PACKAGE}-{VERSION}/tests/drift/"


def _sdist_url() -> str:
    """The sdist's URL as pip's own finder reports it (pip's index configuration, no host named here)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-vv",
                "-d",
                tmp,
                f"{PACKAGE}=={VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    found = re.findall(r"(https?://\S+/" + re.escape(SDIST) + r")", log.stdout + log.stderr)
    if not found:
        raise SystemExit(f"pip found no link to {SDIST} on its index (exit {log.returncode}):\n{log.stdout[-2000:]}")
    return found[0].split("#")[0]


def main(destination: Path) -> None:
    target = destination / f"{PACKAGE}-{VERSION}" / "tests" / "drift"
    if (target / "test_drift_detectors.py").is_file():
        print(f"{target} already present")
        return
    url = _sdist_url()
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{SDIST}: sha256 {digest} is not the pinned {SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(MEMBERS) and m.isfile()]
        try:
            archive.extractall(destination, members=members, filter="data")
        except TypeError:  # Python < 3.10.12 / 3.11.4: no `filter`; the members are plain files under MEMBERS
            archive.extractall(destination, members=members)
    print(f"extracted {len(members)} files of {SDIST} into {destination}")


if __name__ == "__main__":
    root = Path(__file__).resolve().parent
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "cache" / "anchors")
