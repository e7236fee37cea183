"""`emotion-edge calibrate`: learn the resting face of the person in front of the device.

With the service running, the service takes the calibration (it owns the camera): this command drops
a request file in its state directory and waits for the answer. Without a service it opens the
camera itself. `--photos` makes the same baseline from still photos of a neutral face.
Exit status: 0 calibrated (or reset), 1 the calibration failed (no face, several faces, too few
frames, no answer), 2 bad arguments, config, model or files.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edge.commands.common import add_pipeline_flags, config_from_args
from edge.errors import ConfigError, EdgeError

SERVICE_FRESH_SECONDS = 20.0  # a status file older than this belongs to no running service


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="learn this person's resting face, so their expressions read right",
        description="Look at the camera with a relaxed, neutral face for a few seconds. The LED breathes white "
                    "while it runs, then shows green (done) or blinks red (failed). The result is stored beside "
                    "the log and applied from then on, by the service too.",
        epilog="Exit status: 0 done, 1 calibration failed, 2 bad arguments.")
    add_pipeline_flags(p)
    p.add_argument("--seconds", type=float, help="how long to watch the face (default [calibrate] seconds = 5)")
    p.add_argument("--reset", action="store_true", help="remove the calibration")
    p.add_argument("--photos", nargs="+", metavar="FILE", help="make the calibration from still photos of the person's neutral face")
    p.add_argument("--single-crop", action="store_true",
                   help="with --photos: only the model's own crop of each face (default: four framings averaged, as `photo` does)")
    p.add_argument("--out", metavar="PATH", help="where to write the calibration (default: calibration.json beside the log)")
    p.add_argument("--no-service", action="store_true", help="open the camera here even if the service seems to run")
    p.add_argument("--status-file", metavar="PATH", help="the service's status.json (default: where the service writes it)")


def _say(msg: str) -> None:
    print(f"emotion-edge: calibrate: {msg}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from edge.config import calibration_path

    if args.seconds is not None and not 1 <= args.seconds <= 120:
        raise ConfigError(f"--seconds must be between 1 and 120 (got {args.seconds:g})")
    if args.reset and args.photos:
        raise ConfigError("--reset and --photos cannot be used together")
    if args.single_crop and not args.photos:
        raise ConfigError("--single-crop only applies with --photos (the camera calibration crops as the loop does)")
    cfg = config_from_args(args)
    if args.seconds is not None:
        cfg.calibrate.seconds = float(args.seconds)
    out = Path(args.out).expanduser() if args.out else calibration_path(cfg)
    if args.photos:
        return _from_photos(cfg, args.photos, out, multi_crop=not args.single_crop)
    service_dir = None if args.no_service or args.out else _running_service(cfg, args.status_file)
    if service_dir is not None:
        return _through_service(service_dir, "reset" if args.reset else "calibrate", cfg.calibrate.seconds)
    if args.reset:
        from edge.config import learned_baseline_path

        for path, what in ((out, "calibration"), (learned_baseline_path(cfg), "learned resting face")):
            try:
                path.unlink()
            except FileNotFoundError:
                print(f"no {what} at {path}")
            except OSError as e:
                raise EdgeError(f"{path}: cannot remove the {what} ({e.strerror or e})") from None
            else:
                print(f"{what} removed: {path}")
        return 0
    return _with_camera(cfg, out)


# -- through the running service ---------------------------------------------------------------
def _running_service(cfg: Any, explicit: str | None) -> Path | None:
    """The state directory of a service that is running now (fresh status file), else None."""
    from edge.statusfile import candidate_paths, read_status

    for path in ([Path(explicit)] if explicit else candidate_paths(cfg)):
        st = read_status(path)
        if not st or st.get("state") not in ("running", "reloading"):
            continue
        updated = st.get("updated")
        if isinstance(updated, (int, float)) and time.time() - updated < SERVICE_FRESH_SECONDS:
            return path.parent
    return None


def _through_service(state_dir: Path, action: str, seconds: float) -> int:
    from edge.calibration.requests import new_request, wait_result

    try:
        rid = new_request(state_dir, action, seconds)
    except PermissionError:
        raise EdgeError(f"{state_dir}: not allowed to ask the service; run `sudo emotion-edge calibrate`, or join "
                        f"its group: sudo usermod -aG emotion-edge $USER (then log in again)") from None
    except OSError as e:
        raise EdgeError(f"cannot ask the service for a calibration: {e}") from None
    if action == "calibrate":
        print(f"calibrating through the running service: look at the camera with a relaxed face for {seconds:g} s …", flush=True)
    res = wait_result(state_dir, rid, timeout=seconds + 20.0)
    if res is None:
        _say("the service did not answer (is it running and seeing frames? see `emotion-edge status`)")
        return 1
    msg = str(res.get("message", "")).replace("\n", " ")
    if res.get("state") in ("done", "reset"):
        print(msg + (f": {res['file']}" if res.get("file") else ""))
        return 0
    _say(msg)
    return 1


# -- the camera, here ----------------------------------------------------------------------------
def _with_camera(cfg: Any, out: Path) -> int:
    from edge.loop import Control, run_loop
    from edge.config import calibration_path
    from edge.pipeline import Pipeline

    cfg.calibrate.strength = max(cfg.calibrate.strength, 0.0)
    cfg.calibrate.file = str(out)
    pipe = Pipeline.build(cfg, with_log=False, sample_fallback=False)  # `auto` with no camera: an error, never the sample
    try:
        ctl = pipe.calibration.add_capture(out.parent, calibration_path(cfg), requests=False)
        control = Control()
        ctl.start()
        print(f"calibrating: look at the camera with a relaxed face for {cfg.calibrate.seconds:g} s …", flush=True)

        def on_frame(stats: Any, mood: Any) -> None:
            if ctl.session is None:
                control.stop.set()

        why = run_loop(pipe, cfg, control, on_frame=on_frame)
        ctl.end_now()  # the clip or camera ended first: judge what was seen
    finally:
        pipe.close()
    res = ctl.last
    if res is None:
        _say(f"no frames ({why})")
        return 1
    if not res.ok:
        _say(res.message)
        return 1
    print(f"{res.message}: {out}")
    return 0


# -- still photos --------------------------------------------------------------------------------
def _from_photos(cfg: Any, photos: list[str], out: Path, multi_crop: bool = True) -> int:
    from edge.pipeline import build_classifier
    from edge.calibration import make_calibration, save, smiling
    from edge.detect import StillDetector
    from edge.errors import FrameError, SourceError
    from edge.photo import OWN_FACE_SIDE_RATIO, expand_inputs, own_face, read_image

    files, problems = expand_inputs(photos)
    for msg in problems:
        _say(msg)
    samples = []
    with build_classifier(cfg, multi_crop=multi_crop) as clf:  # the model's own answers, never through a calibration
        det = StillDetector(cfg.detect)
        for path in files:
            try:
                gray = read_image(path).gray
                boxes = det.detect(gray)
                box = own_face(boxes)
                if box is None:
                    _say(f"{path}: {'no face found' if not boxes else f'{len(boxes)} faces of similar size'}; skipped "
                         f"(one face of the person per photo, or theirs at least {OWN_FACE_SIDE_RATIO:g}x as wide as any other)")
                    continue
                if len(boxes) > 1:
                    _say(f"{path}: {len(boxes)} faces; took the largest ({box[2]} px wide; the next is {boxes[1][2]} px)")
                probs = clf.classify(gray, box).probs.copy()
                if smile := smiling(probs, clf.labels):
                    _say(f"{path}: the face reads {smile}, not at rest; skipped (photos of a relaxed face, no smile)")
                    continue
                samples.append(probs)
            except (SourceError, FrameError) as e:
                _say(str(e) if str(path) in str(e) else f"{path}: {e}")
        if not samples:
            _say("no usable photo: the calibration needs at least one photo with exactly one face, at rest")
            return 1
        cal = make_calibration(samples, clf.info.sha256, clf.labels, "photos")
    try:
        save(cal, out)
    except OSError as e:
        raise EdgeError(f"{out}: cannot write calibration ({e.strerror or e})") from None
    print(f"calibration from {len(samples)} photo{'s' if len(samples) != 1 else ''} written to {out} "
          f"(model {cal.model_sha256[:12]}; at rest the face read {cal.resting()})")
    return 0
