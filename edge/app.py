"""Builds the loop's parts from a Config; the service and the CLI share this one start-up order."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from edge.config import Config, calibration_path, db_path, learned_baseline_path
from edge.loop import Parts

_log = logging.getLogger("emotion-edge")


def build_classifier(cfg: Config, calibration_required: bool = False, multi_crop: bool | None = None,
                     calibrated: bool = True):
    """The classifier with this person's calibration applied when one exists for this model.

    A missing default calibration is normal; one made for another model is ignored with a warning;
    `calibration_required` (an explicit --calibration PATH) makes any problem an error.
    `multi_crop` None: as configured (`classify.multi_crop`). `calibrated=False` applies none (a new
    calibration must be taken from the model's own answer, not through the old one).
    """
    from edge.calibrate import load_for
    from edge.classify import EmotionClassifier, resolve_model

    clf = EmotionClassifier(resolve_model(cfg.classify.model), num_threads=cfg.classify.num_threads,
                            flip_average=cfg.classify.flip_average,
                            multi_crop=cfg.classify.multi_crop if multi_crop is None else multi_crop)
    try:
        if calibrated and cfg.calibrate.strength > 0:
            cal = load_for(calibration_path(cfg), clf.info.sha256, clf.labels, required=calibration_required)
            apply_calibration(clf, cal, cfg)
    except BaseException:
        clf.close()
        raise
    return clf


def apply_calibration(classifier: Any, cal: Any, cfg: Config) -> None:
    classifier.set_calibration(cal, cfg.calibrate.strength, cfg.calibrate.neutral_margin)


def apply_learned(classifier: Any, cal: Any, cfg: Config) -> None:
    """The learned resting face, only while no explicit calibration is in use (that one wins)."""
    from edge.adapt import SOURCE
    from edge.calibration import CalibrationError

    current = classifier.calibrator
    if current is not None and current.calibration.source != SOURCE:
        return
    try:
        classifier.set_calibration(cal, cfg.calibrate.strength, 0.0)  # the mean holds expressions: no neutral head start
    except CalibrationError:  # learned with a model that a reload has just replaced: the learner restarts
        pass


def build_calibrator(cfg: Config, parts: Parts, state_dir: Path, requests: bool = True):
    """The loop's calibration part; it always works on the classifier the parts hold now (reloads swap it)."""
    from edge.calibrate import CalibrationController

    def model() -> tuple[str, tuple[str, ...]]:
        return parts.classifier.info.sha256, tuple(parts.classifier.labels)

    def apply(cal: Any) -> None:
        apply_calibration(parts.classifier, cal, cfg)
        if cal is None and parts.adapt is not None:  # `calibrate --reset` forgets the learned face too
            parts.adapt.forget()
            parts.adapt.reapply()

    return CalibrationController(state_dir, calibration_path(cfg), seconds=cfg.calibrate.seconds,
                                 min_frames=cfg.calibrate.min_frames, apply=apply, model=model, requests=requests)


def build_learner(cfg: Config, parts: Parts, persist: bool):
    """The loop's learned resting face (None when off); `persist`: the service keeps it across restarts."""
    if not cfg.calibrate.learn or cfg.calibrate.strength <= 0:
        return None
    from edge.adapt import BaselineLearner

    clf = parts.classifier
    return BaselineLearner(clf.info.sha256, clf.labels, half_life=cfg.calibrate.learn_half_life,
                           min_seconds=cfg.calibrate.learn_min_seconds,
                           apply=lambda cal: apply_learned(parts.classifier, cal, cfg),
                           path=learned_baseline_path(cfg) if persist else None)


def build_smoother(cfg: Config, labels: tuple[str, ...]):
    from edge.mood import MoodSmoother

    return MoodSmoother(cfg.mood, labels)


def build_detector(cfg: Config):
    from edge.detect import FaceDetector, SkippingDetector

    if cfg.detect.mode == "track":
        from edge.track import TrackingDetector

        return TrackingDetector(FaceDetector(cfg.detect), cfg.detect)
    return SkippingDetector(FaceDetector(cfg.detect), cfg.detect.detect_every)


def build_parts(cfg: Config, *, pin_factory: Any = None, camera_factory: Any = None, with_log: bool = True,
                calibration_required: bool = False, state_dir: Path | None = None,
                sample_fallback: bool = True, no_camera_hold: float = 0.0,
                on_error: Callable[[str], None] | None = None) -> Parts:
    """Model and detector first (cheap to fail, nothing to undo), then the LED, camera and log.

    An LED that cannot start (pin busy, no GPIO chip, lgpio error) is reported once through
    `on_error` (else logged) and the loop runs without it: the mood log is still worth having.
    `sample_fallback=False` (the service): `auto` with no camera raises CameraNotFound, after the
    LED has shown the no-camera colour for `no_camera_hold` seconds. The camera opens before the
    log, so a failed start never creates or touches the user's log.
    """
    from edge.errors import CameraNotFound
    from edge.eventlog import EventLog
    from edge.led import GpioLed, LedError, NullLed, make_led
    from edge.resilient import wrap_camera
    from edge.sources import open_source

    classifier = build_classifier(cfg, calibration_required)
    detector = build_detector(cfg)
    smoother = build_smoother(cfg, classifier.labels)
    led = log = source = None
    try:
        try:
            led = make_led(cfg.led, pin_factory=pin_factory)
        except LedError as e:
            msg = f"{e}; running without the LED (moods are still logged)"
            (on_error or _log.error)(msg)
            led = NullLed(cfg.led)
        try:
            source = open_source(cfg.source, camera_factory=camera_factory, sample_fallback=sample_fallback)
        except CameraNotFound:
            if no_camera_hold > 0 and isinstance(led, GpioLed):  # a light someone can see
                _show_no_camera(led, no_camera_hold)
            raise
        source = wrap_camera(source, cfg.source, camera_factory=camera_factory)  # cameras only: files still end
        log = EventLog(db_path(cfg), cfg.log) if with_log else None
    except BaseException:
        Parts(source, detector, classifier, smoother, led, log).close()
        raise
    parts = Parts(source, detector, classifier, smoother, led, log)
    if with_log:  # a loop that logs is one a calibration can be asked of (the service, `run`)
        parts.adapt = build_learner(cfg, parts, persist=state_dir is not None)
        parts.calibrate = build_calibrator(cfg, parts, state_dir or db_path(cfg).parent, requests=state_dir is not None)
        if cfg.calibrate.button_pin >= 0:
            from edge.button import ButtonError, CalibrateButton

            try:
                parts.button = CalibrateButton(cfg.calibrate.button_pin, parts.calibrate.start_soon, pin_factory)
            except ButtonError as e:  # like the LED: the mood light is still worth running without it
                (on_error or _log.error)(f"{e}; running without the calibration button")
    return parts


def _show_no_camera(led: Any, hold: float) -> None:
    """Light the no-camera colour (no fade) and keep it `hold` seconds, so the owner sees why it stopped."""
    t = time.monotonic()
    led.show_state("no_camera", t)
    led.show_state("no_camera", t + led.cfg.fade + 1.0)  # past the fade: the full colour now
    time.sleep(hold)
