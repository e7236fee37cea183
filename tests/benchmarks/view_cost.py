"""What a running `emotion-edge view` costs the loop (a script, not a test): frames/s of the real loop
on the bundled clip, as fast as it decodes, with the service's FrameShare and no viewer, and with a viewer
renewing its request (a frame written 4 times a second), runs alternated so drift hits both alike.

    nice -n 5 .venv/bin/python tests/benchmarks/view_cost.py --runs 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge.config import load_config  # noqa: E402
from edge.loop import Control, Stats, run_loop  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from edge.viewshare import FrameReader, FrameShare  # noqa: E402


def one_run(state: Path, viewer: bool, source: str) -> tuple[float, int]:
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
        run_loop(pipe, cfg, Control(), stats=stats)
        writes = pipe.share.writes
    finally:
        stop.set()
        if renewer is not None:
            renewer.join()
        reader.close()
        pipe.close()
    return stats.snapshot()["fps"], writes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--source", default="sample")
    args = ap.parse_args()
    res: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.runs):
            for viewer in (False, True) if i % 2 == 0 else (True, False):
                fps, writes = one_run(Path(d), viewer, args.source)
                res[viewer].append(fps)
                print(f"run {i + 1} {'with a viewer' if viewer else 'no viewer   '}: {fps:7.1f} frames/s, {writes} frames shared", flush=True)
    off, on = statistics.median(res[False]), statistics.median(res[True])
    print(f"median: no viewer {off:.1f} frames/s, with a viewer {on:.1f} frames/s ({(on - off) / off:+.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
