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

from edge.commands.common import add_pipeline_flags, add_service_flags, config_from_args
from edge.errors import ConfigError, EdgeError
from edge.text import printable

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
    p.add_argument("--as", dest="as_label", metavar="EXPRESSION",
                   help="teach this expression (happy, sad, ...) into the profile instead of the resting face "
                        "(neutral is the resting face); with --photos, or live from the camera")
    p.add_argument("--out", metavar="PATH", help="where to write the calibration (default: calibration.json beside the log)")
    p.add_argument("--guided", action="store_true",
                   help="teach every expression live, one after the other: the resting face first, each named on the "
                        "terminal and shown in its colour on the LED; Enter starts a step, s skips it, q stops")
    p.add_argument("--show", metavar="PATH", help="say what the profile at PATH holds and from when, and exit")
    add_service_flags(p)


def _say(msg: str) -> None:
    print(f"emotion-edge: calibrate: {msg}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from edge.config import calibration_path

    if args.show:
        return _show(Path(args.show).expanduser())
    if args.seconds is not None and not 1 <= args.seconds <= 120:
        raise ConfigError(f"--seconds must be between 1 and 120 (got {args.seconds:g})")
    if args.reset and args.photos:
        raise ConfigError("--reset and --photos cannot be used together")
    if args.guided and (args.photos or args.reset or args.as_label):
        raise ConfigError("--guided walks through every expression live; it takes no --photos, --reset or --as")
    if args.reset and args.as_label:
        raise ConfigError("--reset removes the whole profile; it takes no --as")
    if args.single_crop and not args.photos:
        raise ConfigError("--single-crop only applies with --photos (the camera calibration crops as the loop does)")
    cfg = config_from_args(args)
    if args.seconds is not None:
        cfg.calibrate.seconds = float(args.seconds)
    out = Path(args.out).expanduser() if args.out else calibration_path(cfg)
    if args.photos:
        return _from_photos(cfg, args.photos, out, multi_crop=not args.single_crop, as_label=args.as_label or "")
    service_dir = None if args.no_service or args.out else _running_service(cfg, args.status_file)
    steps = _guided_steps(cfg) if args.guided else [args.as_label or ""]
    if service_dir is not None:
        if args.reset:
            return _through_service(service_dir, "reset", cfg.calibrate.seconds)
        if args.guided:
            return _guided(steps, lambda label: _through_service(service_dir, "calibrate", cfg.calibrate.seconds, label,
                                                                  quiet=True), cfg.calibrate.seconds)
        return _through_service(service_dir, "calibrate", cfg.calibrate.seconds, steps[0])
    if args.reset:
        from edge.calibration import CalibrationError, remove_if_ours
        from edge.calibration.learned import KIND as LEARNED_KIND
        from edge.config import learned_baseline_path

        for path, what, kind in ((out, "calibration", None), (learned_baseline_path(cfg), "learned resting face", LEARNED_KIND)):
            try:
                removed = remove_if_ours(path) if kind is None else remove_if_ours(path, kind)
            except CalibrationError as e:
                raise ConfigError(printable(str(e))) from None
            except OSError as e:
                raise EdgeError(f"{printable(str(path))}: cannot remove the {what} ({e.strerror or e})") from None
            print(f"{what} removed: {printable(str(path))}" if removed else f"no {what} at {printable(str(path))}")
        return 0
    if args.guided:
        return _with_camera(cfg, out, steps, guided=True)
    return _with_camera(cfg, out, steps)


# -- teaching every expression, one after the other -----------------------------------------------
GUIDE = {
    "": "look at the camera and talk normally, as you would in front of it (no big smile)",
    "happy": "a smile, as when something pleases you",
    "sad": "a sad face: corners of the mouth down, brows raised in the middle",
    "surprise": "surprise: brows up, eyes and mouth open",
    "angry": "anger: brows drawn down and together, lips pressed",
    "fear": "fear: brows raised and drawn together, eyes wide, mouth stretched",
    "disgust": "disgust: nose wrinkled, upper lip raised",
}
"""What the guide asks for, by label; labels of other models are asked for by name."""


def _guided_steps(cfg: Any) -> list[str]:
    """The resting face first, then the model's other labels in its order (happy, sad and surprise, the
    expressions a mood light shows most, before the rest)."""
    from edge.pipeline import build_classifier

    with build_classifier(cfg) as clf:
        labels = [lab for lab in clf.labels if lab != "neutral"]
    first = [lab for lab in ("happy", "sad", "surprise") if lab in labels]
    return [""] + first + [lab for lab in labels if lab not in first]


def _ask(prompt: str) -> str:
    """One line from the person: '' (Enter: go), 's' (skip) or 'q' (stop); end of input stops."""
    try:
        return input(prompt).strip().lower()[:1]
    except EOFError:
        return "q"


def _guided(steps: list[str], take: Any, seconds: float) -> int:
    """Prompts each step, takes it with `take(label) -> exit status` unless skipped; 0 when at least one was taken."""
    taken, failed = [], []
    print(f"teaching your faces: {len(steps)} steps of {seconds:g} s; at each, Enter starts, s skips, q stops", flush=True)
    for i, label in enumerate(steps, 1):
        name = label or "resting face"
        answer = _ask(f"[{i}/{len(steps)}] {name}: {GUIDE.get(label, label)}. Enter / s / q: ")
        if answer == "q":
            break
        if answer == "s":
            print(f"skipped {name}", flush=True)
            continue
        (taken if take(label) == 0 else failed).append(name)
    print(f"taught: {', '.join(taken) or 'nothing'}" + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 0 if taken else 1


def _show(path: Path) -> int:
    """`calibrate --show PATH`: what a profile holds and from when."""
    from edge.calibration import CalibrationError, load

    try:
        cal = load(path)
    except CalibrationError as e:
        raise ConfigError(str(e)) from None
    print(f"{printable(str(path))}: model {cal.model_sha256[:12]}")
    if cal.has_rest:
        what = "camera frame" if cal.source == "camera" else "photo"
        print(f"  resting face: {cal.frames} {what}{'s' if cal.frames != 1 else ''}, {cal.created_text} "
              f"(at rest it read {cal.resting()})")
        if moved := cal.moved_at_rest():
            print(f"  moved most at rest (log-probability spread; each must rise rest_spread times it more to count): {printable(moved)}")
    else:
        print("  resting face: none (teach it with --as neutral, or without --as)")
    for lab, t in cal.expressions.items():
        what = "camera frame" if t.source == "camera" else "photo"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created))
        print(f"  {printable(lab)}: {t.frames} {what}{'s' if t.frames != 1 else ''}, {when}")
    missing = [lab for lab in cal.labels if lab != "neutral" and lab not in cal.expressions]
    if missing:
        print(f"  not taught: {', '.join(printable(m) for m in missing)} (read as the model reads them)")
    return 0


# -- through the running service ---------------------------------------------------------------
def _running_service(cfg: Any, explicit: str | None) -> Path | None:
    """The state directory of a service that is running now (fresh status file), else None."""
    from edge.service.statusfile import candidate_paths, read_status

    for path in ([Path(explicit)] if explicit else candidate_paths(cfg)):
        st = read_status(path)
        if not st or st.get("state") not in ("running", "reloading"):
            continue
        updated = st.get("updated")
        if isinstance(updated, (int, float)) and time.time() - updated < SERVICE_FRESH_SECONDS:
            return path.parent
    return None


def _through_service(state_dir: Path, action: str, seconds: float, as_label: str = "", quiet: bool = False) -> int:
    from edge.calibration.requests import new_request, wait_result

    try:
        rid = new_request(state_dir, action, seconds, as_label)
    except PermissionError:
        raise EdgeError(f"{state_dir}: not allowed to ask the service; run `sudo emotion-edge calibrate`, or join "
                        f"its group: sudo usermod -aG emotion-edge $USER (then log in again)") from None
    except OSError as e:
        raise EdgeError(printable(f"cannot ask the service for a calibration: {e}")) from None
    if action == "calibrate" and not quiet:
        what = f"show {as_label} to the camera" if as_label not in ("", "neutral") else "look at the camera and talk normally, as you would in front of it (no big smile)"
        print(f"calibrating through the running service: {what} for {seconds:g} s …", flush=True)
    res = wait_result(state_dir, rid, timeout=seconds + 20.0)
    if res is None:
        _say("the service did not answer (is it running and seeing frames? see `emotion-edge status`)")
        return 1
    msg = printable(str(res.get("message", "")))
    if res.get("state") in ("done", "reset"):
        print(msg + (f": {printable(str(res['file']))}" if res.get("file") else ""))
        return 0
    _say(msg)
    return 1


# -- the camera, here ----------------------------------------------------------------------------
def _with_camera(cfg: Any, out: Path, steps: list[str], guided: bool = False) -> int:
    """Each step (a label, "" the resting face) taken from the camera here, one after the other on the
    same open camera; with `guided`, each after a prompt."""
    from edge.loop import Control, run_loop
    from edge.config import calibration_path
    from edge.pipeline import Pipeline

    cfg.calibrate.strength = max(cfg.calibrate.strength, 0.0)
    cfg.calibrate.file = str(out)
    pipe = Pipeline.build(cfg, with_log=False, sample_fallback=False)  # `auto` with no camera: an error, never the sample
    try:
        ctl = pipe.calibration.add_capture(out.parent, calibration_path(cfg), requests=False)
        _check_label(steps[0], pipe.classifier.labels)

        def take(label: str) -> int:
            control = Control()
            ctl.start(as_label=label)
            what = f"show {label} to the camera" if label not in ("", "neutral") else "look at the camera and talk normally, as you would in front of it (no big smile)"
            if not guided:
                print(f"calibrating: {what} for {cfg.calibrate.seconds:g} s …", flush=True)

            def on_frame(stats: Any, mood: Any) -> None:
                if ctl.session is None:
                    control.stop.set()

            why = run_loop(pipe, cfg, control, on_frame=on_frame)
            ctl.end_now()  # the clip or camera ended first: judge what was seen
            res = ctl.last
            if res is None:
                _say(f"no frames ({why})")
                return 1
            if not res.ok:
                _say(res.message)
                return 1
            print(f"{res.message}: {printable(str(out))}", flush=True)
            return 0

        return _guided(steps, take, cfg.calibrate.seconds) if guided else take(steps[0])
    finally:
        pipe.close()


# -- still photos --------------------------------------------------------------------------------
def _from_photos(cfg: Any, photos: list[str], out: Path, multi_crop: bool = True, as_label: str = "") -> int:
    """The resting face (no `as_label`, or neutral) or one taught expression from still photos, written
    into the profile at `out` (created when missing; the rest of an existing profile is kept)."""
    from edge.pipeline import build_classifier
    from edge.calibration import Calibration, save
    from edge.calibration.look import Looker
    from edge.calibration.profile import moved_from_rest
    from edge.calibration.teach import rest_from, taught_from, teach_from_image
    from edge.detect import StillDetector
    from edge.errors import FrameError, SourceError
    from edge.photo import OWN_FACE_SIDE_RATIO, expand_inputs, own_face, read_image

    files, problems = expand_inputs(photos)
    for msg in problems:
        _say(msg)
    _refuse_input_as_output(files, out)
    lessons = []
    with build_classifier(cfg, multi_crop=multi_crop) as clf:  # the model's own answers, never through a calibration
        rest = as_label in ("", "neutral")
        _check_label(as_label, clf.labels)
        old = _existing_profile(out, clf.info.sha256, clf.labels)
        det = StillDetector(cfg.detect)
        looker = Looker(clf.info.input.crop_margin)
        for path in files:
            try:
                gray = read_image(path).gray
                boxes = det.detect(gray)
                box = own_face(boxes)
                if box is None:
                    _say(f"{printable(str(path))}: {'no face found' if not boxes else f'{len(boxes)} faces of similar size'}; skipped "
                         f"(one face of the person per photo, or theirs at least {OWN_FACE_SIDE_RATIO:g}x as wide as any other)")
                    continue
                if len(boxes) > 1:
                    _say(f"{printable(str(path))}: {len(boxes)} faces; took the largest ({box[2]} px wide; the next is {boxes[1][2]} px)")
                lesson = teach_from_image(clf, looker, gray, box, rest)
                if lesson.smile:
                    _say(f"{printable(str(path))}: the face reads {lesson.smile}, not at rest; skipped (photos of a relaxed face, no smile)")
                    continue
                lessons.append(lesson)
            except (SourceError, FrameError) as e:
                _say(printable(str(e) if str(path) in str(e) else f"{path}: {e}"))
        if not lessons:
            what = "at rest" if rest else f"showing {as_label}"
            _say(f"no usable photo: it needs at least one photo with exactly one face, {what}")
            return 1
        n = len(lessons)
        if rest:
            new = rest_from(lessons, clf.info.sha256, clf.labels)
            cal = new if old is None else old.with_rest(new)
        else:
            taught = taught_from(lessons)
            base = old if old is not None else Calibration(clf.info.sha256, clf.labels, None, 0.0, 0, "photos")
            cal = base.with_expression(as_label, taught)
            if cal.baseline is not None and not moved_from_rest(taught.logp, cal.baseline):
                _say(f"the {as_label} photos read almost as the resting face; taught all the same (a clearer {as_label} reads better)")
    try:
        save(cal, out)
    except OSError as e:
        raise EdgeError(f"{printable(str(out))}: cannot write calibration ({e.strerror or e})") from None
    photos_text = f"{n} photo{'s' if n != 1 else ''}"
    if rest:
        print(f"calibration from {photos_text} written to {printable(str(out))} "
              f"(model {cal.model_sha256[:12]}; at rest the face read {cal.resting()})")
    else:
        print(f"{as_label} taught from {photos_text} into {printable(str(out))} (model {cal.model_sha256[:12]}; "
              f"the profile holds {', '.join(cal.taught())})")
    return 0


def _check_label(label: str, labels: tuple[str, ...]) -> None:
    if label and label not in labels:
        raise ConfigError(f"--as {printable(label)}: the model has no such expression (it has {', '.join(labels)})")


def _refuse_input_as_output(files: list[Path], out: Path) -> None:
    """A photo named as the output would be overwritten with JSON."""
    for f in files:
        try:
            if out.exists() and f.samefile(out):
                raise ConfigError(f"--out {printable(str(out))} is one of the photos; name another file")
        except OSError:
            continue


def _existing_profile(out: Path, sha256: str, labels: tuple[str, ...]) -> Any:
    """The profile already at `out` (None: none yet, or another model's, which this model cannot use and
    the new one replaces, said in one line); a file there that is not a profile is refused, never
    overwritten."""
    import os

    from edge.calibration import CalibrationError, load

    if not os.path.lexists(out):
        return None
    try:
        cal = load(out)
    except CalibrationError as e:
        raise ConfigError(f"{printable(str(e))}; not changed (name another --out, or remove it first)") from None
    if (cal.model_sha256, cal.labels) != (sha256, tuple(labels)):
        _say(f"{printable(str(out))} was made for another model ({cal.model_sha256[:12]}); replacing it")
        return None
    return cal
