"""What a running `emotion-edge view` costs the loop (a script, not a test): frames/s of the real loop
on the bundled clip, as fast as it decodes, with the service's FrameShare and no viewer, and with a viewer
renewing its request (a frame written 4 times a second), runs alternated so drift hits both alike.
Also the loop's CPU time per frame (process time: other programs on the machine do not count; the
viewer's renewing thread, about one small read and write a second, does).

    nice -n 5 .venv/bin/python tests/benchmarks/view_cost.py --runs 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge.config import load_config  # noqa: E402
from edge.loop import Control, Stats, run_loop  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from edge.viewshare import FrameReader, FrameShare  # noqa: E402


def one_run(state: Path, viewer: bool, source: str) -> tuple[float, float, int]:
    cfg = load_config(None, {"source": {"source": source}, "led": {"backend": "none"}})
    pipe = Pipeline.build(cfg, with_log=False)
    pipe.share = FrameShare(state)
    stop = threading.Event()
    reader = FrameReader(state)
    renewer = None
    if viewer:
        def renew() -> None:
            while not stop.is_set():
                reader.renew(force=True)
                reader.read()
                stop.wait(1.0)
        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
    stats = Stats()
    try:
        cpu = time.process_time()
        run_loop(pipe, cfg, Control(), stats=stats)
        cpu = time.process_time() - cpu
        writes = pipe.share.writes
    finally:
        stop.set()
        if renewer is not None:
            renewer.join()
        reader.close()
        pipe.close()
    return stats.snapshot()["fps"], cpu * 1e3 / max(1, stats.frames), writes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--source", default="sample")
    args = ap.parse_args()
    res: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.runs):
            for viewer in (False, True) if i % 2 == 0 else (True, False):
                fps, ms, writes = one_run(Path(d), viewer, args.source)
                res[viewer].append(fps)
                cpu[viewer].append(ms)
                print(f"run {i + 1} {'with a viewer' if viewer else 'no viewer   '}: {fps:7.1f} frames/s, "
                      f"{ms:.3f} ms CPU a frame, {writes} frames shared", flush=True)
    off, on = statistics.median(res[False]), statistics.median(res[True])
    coff, con = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"median: no viewer {off:.1f} frames/s, {coff:.3f} ms CPU a frame; with a viewer {on:.1f} frames/s, "
          f"{con:.3f} ms CPU a frame ({(con - coff) / coff:+.1%} CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
