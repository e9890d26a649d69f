"""Screenshot of a run's TensorBoard, taken with headless Chromium.

Starts ``tensorboard --logdir LOGDIR`` on a free local port, waits until the
server has loaded the custom-scalars layout kerafine writes, opens the page
in headless Chromium and saves a PNG (quantised to a palette so it stays
small). Used to make ``docs/img/tensorboard.png`` from the demo's logs::

    PYTHONPATH=. python -m kerafine demo --quick --out /tmp/demo
    python tools/tensorboard_screenshot.py /tmp/demo/logs/finetuned --out docs/img/tensorboard.png

Needs Chromium (Debian: ``apt-get install -y chromium``) and the
``tensorboard`` command of the current environment. Not a test: CI machines
have no Chromium. The layout itself is tested in ``tests/test_tensorboard.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Flags for a headless Chromium that never reaches the network and renders
# WebGL in software (SwiftShader) on a machine without a GPU.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


def _wait_for_layout(base: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if _get(f"{base}/data/plugin/custom_scalars/layout").get("category"):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"TensorBoard at {base} served no custom-scalars layout within {timeout:.0f} s")


def _tensorboard_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "tensorboard.main"]


def screenshot(
    logdir: str,
    out: str,
    width: int = 1400,
    height: int = 1500,
    plugin: str = "custom_scalars",
    chromium: str = "chromium",
    wait_ms: int = 20000,
    colors: int = 64,
    smoothing: float = 0.0,
) -> str:
    """Start TensorBoard on ``logdir``, screenshot the ``plugin`` tab into ``out`` (PNG); returns ``out``.

    ``smoothing`` is set through the page's URL (TensorBoard's own default is 0.6).
    """
    if shutil.which(chromium) is None:
        raise SystemExit(f"{chromium!r} not found: install Chromium (Debian: apt-get install -y chromium)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        _tensorboard_command() + ["--logdir", logdir, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
    )
    try:
        _wait_for_layout(base, timeout=120)
        with tempfile.TemporaryDirectory() as profile:
            raw = os.path.join(profile, "shot.png")
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={width},{height}",
                    f"--virtual-time-budget={wait_ms}",
                    f"--screenshot={raw}",
                    f"{base}/#{plugin}&_smoothingWeight={smoothing:g}&_ignoreYOutliers=false",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=300,
            )
            from PIL import Image

            image = Image.open(raw).convert("RGB")
            image.quantize(colors=colors).save(out, optimize=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", help="the run's TensorBoard log directory")
    parser.add_argument("--out", default="tensorboard.png", help="PNG to write (default: tensorboard.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--plugin", default="custom_scalars", help="the TensorBoard tab (default: custom_scalars)")
    parser.add_argument("--chromium", default="chromium", help="the Chromium executable (default: chromium)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="page time before the shot (default: 20000)")
    parser.add_argument("--smoothing", type=float, default=0.0, help="line smoothing, 0 to 0.999 (default: 0)")
    args = parser.parse_args(argv)
    path = screenshot(
        args.logdir,
        args.out,
        args.width,
        args.height,
        args.plugin,
        args.chromium,
        args.wait_ms,
        smoothing=args.smoothing,
    )
    print(f"{path}: {os.path.getsize(path) / 1024:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
