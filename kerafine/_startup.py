"""Load TensorFlow without its C++ start-up chatter, keeping any real error.

On a CPU-only machine, ``import tensorflow`` and the first device query print
lines such as ``failed call to cuInit: ... CUDA error (303)``, ``Could not find
cuda drivers`` and the oneDNN / CPU-instruction notices. They come from C++
(absl logging) straight to file descriptor 2, before ``absl::InitializeLog``,
so ``TF_CPP_MIN_LOG_LEVEL`` does not hide all of them (checked with TF 2.21:
the ``cudart_stub`` and ``cuInit`` lines survive level 2, and level 3 would
also hide real errors).

:func:`quiet_tensorflow` therefore sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the
user set it, then imports TensorFlow and lists its devices with descriptor 2
pointed at a temporary file, and writes back to the real stderr every line
that is not one of the known start-up notices (:data:`NOISE`). An error or an
unknown message is shown; only the listed notices are dropped. It must run
before anything imports TensorFlow: the ``kerafine`` command calls it first,
and the notebooks call it in their first cell.

Example:

>>> from kerafine import quiet_tensorflow
>>> quiet_tensorflow()  # then import keras / tensorflow as usual
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

__all__ = ["quiet_tensorflow", "NOISE"]

#: Start-up notices that carry no information on a CPU-only machine (regular
#: expressions matched against each stderr line during the import).
NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"cuda_platform\.cc:\d+\] failed call to cuInit: .*CUDA error",
    r"cuda_executor\.cc:\d+\] .*(NUMA node|successful NUMA)",
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
    r"oneDNN custom operations are on",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE))


def _is_noise(line: str) -> bool:
    return bool(_NOISE.search(line))


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up notices removed from stderr.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless it is already set, then imports
    TensorFlow and lists its physical devices (the step that calls
    ``cuInit``) while file descriptor 2 is captured; every captured line that
    is not a known start-up notice (:data:`NOISE`) is written back to stderr,
    so real errors still show. Once TensorFlow is imported it does nothing.
    Setting the environment variable ``KERAFINE_TF_STARTUP=show`` turns the
    filtering off (the notices are printed as TensorFlow prints them).

    Example:

    >>> from kerafine import quiet_tensorflow
    >>> quiet_tensorflow()
    >>> import tensorflow as tf  # already loaded, quietly
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("KERAFINE_TF_STARTUP", "").lower() == "show":
        return
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except (AttributeError, OSError, ValueError):  # e.g. a stream without a descriptor
        fd = 2
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), fd)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not _is_noise(line)
            ]
            if kept:
                os.write(fd, "".join(kept).encode())
