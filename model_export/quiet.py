"""Import TensorFlow without its start-up noise on the user's terminal.

TF 2.21 writes absl/oneDNN/CPU-feature INFO lines from C++ while `import tensorflow` runs, before
any log level applies (TF_CPP_MIN_LOG_LEVEL, GLOG_minloglevel and ABSL_MIN_LOG_LEVEL were all
tried: the lines still appear). So file descriptor 2 is pointed at a temporary file for the
import; afterwards the known noise is dropped and anything else is written out as it came.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
    "computation placer already registered",
    "fully_quantize:", "Created TensorFlow Lite XNNPACK delegate",
)


def keep(line: str) -> bool:
    return bool(line.strip()) and not any(n in line for n in NOISE)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Collect what C++ code writes to fd 2 in this block; afterwards write out all but the noise.

    Keep the block short: Python messages printed inside it appear only when it ends.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreter): leave it alone
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines() if keep(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow() -> ModuleType:
    """`import tensorflow` (and keras) with the start-up noise filtered out; other output is kept."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_stderr():
        import tensorflow as tf
        import keras  # noqa: F401 - its import logs through the same C++ path
    return tf
