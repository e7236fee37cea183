"""`emotion-export cost`: what one face costs with an int8 .tflite (ms per face, one LiteRT thread, this CPU).

The same measurement `export` writes into NAME.json's `cost`: many timed invocations after a warm-up, on
the device's own runtime, in 5 blocks, the lowest block median kept (on a shared machine another job
slows whole stretches of runs; the lowest median is the model's own price), so models can be chosen with their price beside their accuracy
(model_export/runs/README.md). Timings hold for the CPU they were taken on; the JSON says which.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.argtypes import int_in
from edge.contract import Cost, ModelInfo, metadata_path, read_model_info, write_model_info
from edge.errors import ModelError

RUNS = 300
WARMUP = 30
BLOCKS = 5
MIN_RUNS = BLOCKS


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (x86 'model name', a Pi's 'Model'), else the machine type."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return " ".join(v.split())[:200]
    return platform.machine() or "unknown CPU"


def _runtime() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist.replace('-', '_')} {version(dist)}"
        except PackageNotFoundError:
            continue
    return ""


def measure(tflite: str | Path, runs: int = RUNS, warmup: int = WARMUP, threads: int = 1) -> Cost:
    """ms of set_tensor + invoke + get_tensor for one face on `threads` LiteRT threads (default delegates, as
    the edge runs it): the lowest median of BLOCKS consecutive blocks of the runs. The input is a fixed
    pseudo-random face (an int8 net's time barely depends on it)."""
    from edge.classify import load_interpreter

    if runs < MIN_RUNS:
        raise ModelError(f"{tflite}: time at least {MIN_RUNS} invocations, not {runs}")
    interp = load_interpreter(tflite, num_threads=threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    dtype = np.dtype(inp["dtype"])
    rng = np.random.default_rng(0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=inp["shape"], endpoint=True).astype(dtype)
    else:
        x = rng.random(size=inp["shape"]).astype(dtype)
    times = np.empty(runs)
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        interp.get_tensor(out["index"])
        if i >= warmup:
            times[i - warmup] = time.perf_counter() - t0
    ms = max(1e-3, round(min(float(np.median(b)) for b in np.array_split(times, BLOCKS)) * 1e3, 3))
    return Cost(ms_per_face=ms, threads=threads, cpu=cpu_name(), measured=_dt.date.today().isoformat(),
                runtime=_runtime(), invocations=runs)


def with_cost(tflite: str | Path, info: ModelInfo, runs: int = RUNS) -> ModelInfo:
    """The metadata with its cost measured on `tflite` (runs=0: as it is)."""
    return replace(info, cost=measure(tflite, runs)) if runs else info


def cost_line(model: str | Path) -> str | None:
    """'cost: ...' from a .tflite's NAME.json, or None (no .tflite, no JSON, or no cost in it)."""
    if Path(model).suffix.lower() != ".tflite" or not metadata_path(model).is_file():
        return None
    try:
        info = read_model_info(model, check_sha=False)
    except ModelError:
        return None
    return f"cost (its {metadata_path(model).name}): {info.cost.describe()}" if info.cost else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="NAME.tflite (with its NAME.json)")
    p.add_argument("--runs", type=int_in(MIN_RUNS, 1_000_000), default=RUNS, help="timed invocations (after a warm-up)")
    p.add_argument("--write", action="store_true",
                   help="write the measurement into NAME.json's 'cost' (nothing else in it, nor the .tflite, changes)")


def run(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if model.suffix.lower() != ".tflite":
        raise ModelError(f"{model}: cost is measured on an int8 NAME.tflite")
    info = read_model_info(model)  # refuses a .tflite whose JSON does not match it
    old = info.cost
    cost = measure(model, args.runs)
    print(f"{model}: {cost.describe()}")
    if old is not None:
        print(f"  (its {metadata_path(model).name} said {old.describe()})", file=sys.stderr)
    if args.write:
        meta = write_model_info(model, replace(info, cost=cost))
        print(f"wrote the cost into {meta}", file=sys.stderr)
    return 0
