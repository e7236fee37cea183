"""`emotion-edge check`: what this machine has (camera, runtime, cascade, model, LED) and whether it works."""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json

import numpy as np

from edge.commands.common import add_pipeline_flags, config_from_args
from edge.text import printable


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="report camera, runtime, cascade, model and LED backend, and test the model")
    add_pipeline_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _camera() -> tuple[bool, str]:
    found = []
    if importlib.util.find_spec("picamera2") is not None:
        try:
            from picamera2 import Picamera2
            info = Picamera2.global_camera_info()
            found += [f"picamera2: {c.get('Model', '?')}" for c in info] or ["picamera2 installed, no camera attached"]
        except Exception as e:  # libcamera missing or broken
            found.append(f"picamera2 unusable ({e})")
    else:
        found.append("picamera2 not installed")
    devices = sorted(glob.glob("/dev/video*"))
    found.append(f"video devices: {', '.join(devices) if devices else 'none'}")
    return True, "; ".join(found)


def _source(cfg) -> tuple[bool, str]:
    """The configured source (--source or source.source) opened and one frame read from it."""
    from edge.sources import open_source

    spec = cfg.source.source
    src = open_source(cfg.source)
    try:
        frame = src.read()
    finally:
        src.close()
    if frame is None:
        return False, f"{spec}: opened, but it gave no usable frame"
    h, w = frame.image.shape[:2]
    return True, f"{spec}: read a {w}x{h} frame"


def _runtime() -> tuple[bool, str]:
    for mod in ("ai_edge_litert", "tflite_runtime"):
        if importlib.util.find_spec(mod) is not None:
            from importlib.metadata import PackageNotFoundError, version
            try:
                v = version(mod.replace("_", "-"))
            except PackageNotFoundError:
                v = "?"
            return True, f"{mod} {v}"
    return False, "no TFLite runtime: pip install ai-edge-litert"


def _cascade(cfg) -> tuple[bool, str]:
    from edge.detect import find_cascade
    return True, str(find_cascade(cfg.detect.cascade))


def _model(cfg) -> tuple[bool, str]:
    from edge.classify import EmotionClassifier, resolve_model
    path = resolve_model(cfg.classify.model)
    clf = EmotionClassifier(path, num_threads=cfg.classify.num_threads)
    try:
        h, w = clf.info.input.height, clf.info.input.width
        face = np.full((h * 3, w * 3), 128, np.uint8)
        p = clf.classify(face, (w, h, w, h))
        ok = abs(float(p.probs.sum()) - 1.0) < 1e-3
        acc = clf.info.metrics.get("accuracy")
        from edge.led import spare_colors

        spare = spare_colors(clf.labels, cfg.led.colors)
        return ok, (f"{path} ({h}x{w} {clf.info.input.dtype}, {len(clf.labels)} labels"
                    + (f", PrivateTest accuracy {acc:.3f}" if isinstance(acc, (int, float)) else "")
                    + f"): answers, probabilities sum to {p.probs.sum():.3f}"
                    + f"; {clf.info.cost.describe() if clf.info.cost else 'cost not measured (emotion-export cost MODEL --write)'}"
                    + (f"; LED: no configured colour for {', '.join(f'{k} (shown {v})' for k, v in spare.items())}, "
                       "set [led] colors to choose" if spare else ""))
    finally:
        clf.close()


def _calibration(cfg) -> tuple[bool, str]:
    """Whether a per-person calibration will be applied: absent is fine, another model's is ignored."""
    import os

    from edge.calibration import CalibrationError, for_model, load
    from edge.classify import resolve_model
    from edge.config import calibration_path
    from edge.contract import read_model_info

    path = calibration_path(cfg, for_reading=True)
    if cfg.calibrate.strength <= 0:
        return True, "off ([calibrate] strength = 0 or --no-calibration)"
    if not os.path.lexists(path):
        return True, f"none at {path} (optional: `emotion-edge calibrate` learns your resting face){_learned(cfg)}"
    cal = load(path)  # a damaged file is a failure: the loop would warn and run uncalibrated
    info = read_model_info(resolve_model(cfg.classify.model))
    try:
        for_model(cal, info.sha256, info.labels, str(path))
    except CalibrationError:
        return True, (f"{path}: made for another model ({cal.model_sha256[:12]}), so it is ignored; "
                      f"run `emotion-edge calibrate` again{_learned(cfg, info)}")
    return True, f"{path}: in use, {cal.describe()}"


def _learned(cfg, info=None) -> str:
    """'; while none is, ...': what the service has learned so far (a damaged file is only a note); '' when off.
    `info`: the model's, when the caller has read it already."""
    from edge.calibration.learned import BaselineFileError, face_time, load
    from edge.classify import resolve_model
    from edge.config import learned_baseline_path
    from edge.contract import read_model_info

    c = cfg.calibrate
    if not c.learn:
        return ""
    info = info or read_model_info(resolve_model(cfg.classify.model))
    path = learned_baseline_path(cfg, for_reading=True)
    try:
        b = load(path, info.sha256, info.labels, c.learn_half_life, c.learn_min_seconds)
    except FileNotFoundError:
        so_far = f"nothing learned yet; used after {c.learn_min_seconds:g} s of faces"
    except BaselineFileError as e:
        so_far = str(e)
    else:
        so_far = f"{face_time(b.face_seconds)} of faces in {path}" + ("" if b.ready else f", used after {c.learn_min_seconds:g} s")
    return f"; while none is, the resting face is learned while watching ({so_far})"


def _led(cfg) -> tuple[bool, str]:
    backend = cfg.led.backend
    if backend in ("gpio", "auto"):
        try:
            import warnings

            from gpiozero import Device
            from gpiozero.pins.native import NativeFactory  # noqa: F401 - import proves gpiozero is complete
            with warnings.catch_warnings():  # gpiozero warns once per factory it cannot use
                warnings.simplefilter("ignore")
                factory = Device._default_pin_factory()
            return True, f"{backend}: gpiozero pin factory {type(factory).__name__}, pins R{cfg.led.red_pin} G{cfg.led.green_pin} B{cfg.led.blue_pin}"
        except Exception as e:
            if backend == "gpio":
                return False, f"gpio: no usable pin factory ({e})"
            return True, f"auto: no GPIO here ({type(e).__name__}), the console LED will be used"
    return True, backend


def _framing(cfg) -> tuple[bool, str]:
    """Framing advice (edge/aim.py, as `view` gives it) from a few frames of the camera; never a failure."""
    from edge.aim import Aimer, look
    from edge.commands.calibrate import _running_service
    from edge.detect import FaceDetector
    from edge.errors import CameraNotFound
    from edge.sources import open_source

    if cfg.source.source.strip() in ("", "auto") and _running_service(cfg, None) is not None:
        return True, "the service holds the camera: `emotion-edge view` shows its picture with this advice"
    try:
        src = open_source(cfg.source, sample_fallback=False)
    except CameraNotFound:
        return True, "nothing to frame: no camera found"
    det, aimer, advice = FaceDetector(cfg.detect), Aimer(cfg.detect), ""
    try:
        for i in range(5):
            frame = src.read()
            if frame is None:
                break
            looks = [look(frame.image, b, cfg.detect) for b in det.detect(frame.image)]
            advice = aimer.advise(float(i), frame.image, looks, once=True)
            if looks:
                break
    finally:
        src.close()
    return True, advice or "no frame to judge"


def _mqtt(cfg) -> tuple[bool, str]:
    """[mqtt], when a broker is set: paho present, settings valid, broker reachable, login accepted."""
    if not cfg.mqtt.host:
        return True, "off ([mqtt] host is empty)"
    from edge.mqtt import probe
    return probe(cfg.mqtt)


def main(args: argparse.Namespace) -> int:
    from edge.errors import EdgeError

    results = {}
    try:
        cfg = config_from_args(args)
        results["config"] = (True, args.config or "defaults (+ /etc/emotion-edge/config.toml if present)")
    except EdgeError as e:
        results["config"] = (False, str(e))
        cfg = None
    checks = [("camera", _camera), ("runtime", _runtime)]
    if cfg is not None and cfg.source.source.strip() not in ("", "auto"):  # check the source it was given
        checks[0] = ("source", lambda: _source(cfg))
    if cfg is not None:
        checks += [("cascade", lambda: _cascade(cfg)), ("model", lambda: _model(cfg)),
                   ("calibration", lambda: _calibration(cfg)), ("led", lambda: _led(cfg)),
                   ("mqtt", lambda: _mqtt(cfg))]
    for name, fn in checks:
        try:
            results[name] = fn()
        except Exception as e:
            results[name] = (False, str(e).splitlines()[0] if str(e) else type(e).__name__)
    if cfg is not None and results[checks[0][0]][0]:  # the picture, when the source could be read
        try:
            results["framing"] = _framing(cfg)
        except Exception as e:  # a camera that opened for the source check and not now: advice is no verdict
            results["framing"] = (True, f"no advice ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    ok = all(r[0] for r in results.values())
    if args.json:
        print(json.dumps({"ok": ok, **{k: {"ok": v[0], "detail": v[1]} for k, v in results.items()}}))
    else:
        for name, (good, detail) in results.items():
            print(f"{'ok ' if good else 'FAIL'} {name:11s} {printable(detail)}")
    return 0 if ok else 1
