"""Import TensorFlow without its start-up noise on the user's terminal.

TF 2.21 writes absl/oneDNN/CPU-feature INFO lines from C++ while `import tensorflow` runs, before
any log level applies (TF_CPP_MIN_LOG_LEVEL, GLOG_minloglevel and ABSL_MIN_LOG_LEVEL were all
tried: the lines still appear). So file descriptor 2 is pointed at a pipe for the import (and
the int8 conversion); a thread drops the known noise and passes every other line on as it comes.
"""
from __future__ import annotations

import os
import sys
import threading
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


def keep(line: str, extra: tuple[str, ...] = ()) -> bool:
    return bool(line.strip()) and not any(n in line for n in NOISE + extra)


@contextmanager
def quiet_stderr(extra: tuple[str, ...] = ()) -> Iterator[None]:
    """Pass what is written to fd 2 in this block through a filter that drops the known noise
    (and lines containing any of `extra`, for a block whose errors are reported another way).

    A pipe and a thread, not a file read at the end: other lines (a converter's last words before
    an abort, Python warnings) still reach the terminal as they come.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreter): leave it alone
        yield
        return
    r, w = os.pipe()

    def pump() -> None:
        with os.fdopen(r, "rb") as src:
            for raw in src:
                line = raw.decode("utf-8", "replace")
                if keep(line, extra):
                    os.write(saved, raw)

    t = threading.Thread(target=pump, name="quiet-stderr", daemon=True)
    t.start()
    os.dup2(w, 2)
    os.close(w)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        t.join(timeout=5)
        os.close(saved)


def import_tensorflow() -> ModuleType:
    """`import tensorflow` (and keras) with the start-up noise filtered out; other output is kept."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_stderr():
        import tensorflow as tf
        import keras  # noqa: F401 - its import logs through the same C++ path
    return tf


def keras_backend() -> str:
    """The Keras backend this process will use (KERAS_BACKEND; Keras' own default is TensorFlow)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow").strip().lower() or "tensorflow"


def import_keras() -> ModuleType:
    """`import keras`, TensorFlow first and quietly when it is the backend: a GPU machine may train
    with KERAS_BACKEND=jax and have no TensorFlow at all."""
    if keras_backend() == "tensorflow":
        import_tensorflow()
    import keras

    return keras
