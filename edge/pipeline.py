"""The pipeline: the one owner of the stages the loop drives. It builds them from a Config (one start-up
order for the service and every command), reloads what a new config or model changes (keeping the
running stages when anything fails), describes them for `status` and closes them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge.config import Config, calibration_path, db_path, learned_baseline_path
from edge.types import Detector, Source

if TYPE_CHECKING:
    from edge.adapt import BaselineLearner
    from edge.button import CalibrateButton
    from edge.calibrate import CalibrationController
    from edge.classify import EmotionClassifier
    from edge.eventlog import EventLog
    from edge.led import MoodLight
    from edge.mood import MoodSmoother

_log = logging.getLogger("emotion-edge")

RESTART_SECTIONS = ("source", "led", "log")
"""Config sections a reload cannot apply (the camera, the LED pins and the log stay open)."""


@dataclass
class Pipeline:
    """Everything the loop drives; close() releases all of it (LED off first), safe twice."""

    source: Source
    detector: Detector
    classifier: EmotionClassifier
    smoother: MoodSmoother
    led: MoodLight
    log: EventLog | None = None
    calibrate: CalibrationController | None = None  # per-person calibration on request
    button: CalibrateButton | None = None           # a push button that asks for a calibration
    adapt: BaselineLearner | None = None            # the resting face learned while watching
    cfg: Config | None = None                       # what it was built or last reloaded from
    calibration_required: bool = False              # an explicit --calibration PATH: any problem is an error

    # ---------------------------------------------------------------- build
    @classmethod
    def build(cls, cfg: Config, *, pin_factory: Any = None, camera_factory: Any = None, with_log: bool = True,
              calibration_required: bool = False, state_dir: Path | None = None, sample_fallback: bool = True,
              no_camera_hold: float = 0.0, on_error: Callable[[str], None] | None = None,
              open_source: Callable[[], Source] | None = None, led: MoodLight | None = None) -> Pipeline:
        """Model and detector first (cheap to fail, nothing to undo), then the LED, camera and log.

        An LED that cannot start (pin busy, no GPIO chip, lgpio error) is reported once through
        `on_error` (else logged) and the loop runs without it: the mood log is still worth having.
        `sample_fallback=False` (the service): `auto` with no camera raises CameraNotFound, after the
        LED has shown the no-camera colour for `no_camera_hold` seconds. The camera opens before the
        log, so a failed start never creates or touches the user's log. `open_source` (opens the
        frame source) and `led` replace the configured ones (bench, tests); the pipeline closes them too.
        """
        from edge.errors import CameraNotFound
        from edge.eventlog import EventLog
        from edge.led import GpioLed, LedError, NullLed, make_led
        from edge.resilient import wrap_camera
        from edge.sources import open_source as open_configured

        classifier = build_classifier(cfg, calibration_required)
        detector = build_detector(cfg)
        smoother = build_smoother(cfg, classifier.labels)
        log = source = None
        try:
            if led is None:
                try:
                    led = make_led(cfg.led, pin_factory=pin_factory)
                except LedError as e:
                    msg = f"{e}; running without the LED (moods are still logged)"
                    (on_error or _log.error)(msg)
                    led = NullLed(cfg.led)
            if open_source is not None:
                source = open_source()
            else:
                try:
                    source = open_configured(cfg.source, camera_factory=camera_factory, sample_fallback=sample_fallback)
                except CameraNotFound:
                    if no_camera_hold > 0 and isinstance(led, GpioLed):  # a light someone can see
                        _show_no_camera(led, no_camera_hold)
                    raise
                source = wrap_camera(source, cfg.source, camera_factory=camera_factory)  # cameras only: files still end
            log = EventLog(db_path(cfg), cfg.log) if with_log else None
        except BaseException:
            cls(source, detector, classifier, smoother, led, log).close()  # type: ignore[arg-type]
            raise
        pipe = cls(source, detector, classifier, smoother, led, log, cfg=cfg, calibration_required=calibration_required)
        if with_log:  # a loop that logs is one a calibration can be asked of (the service, `run`)
            pipe.adapt = build_learner(cfg, pipe, persist=state_dir is not None)
            pipe.calibrate = build_calibrator(cfg, pipe, state_dir or db_path(cfg).parent, requests=state_dir is not None)
            if cfg.calibrate.button_pin >= 0:
                from edge.button import ButtonError, CalibrateButton

                try:
                    pipe.button = CalibrateButton(cfg.calibrate.button_pin, pipe.calibrate.start_soon, pin_factory)
                except ButtonError as e:  # like the LED: the mood light is still worth running without it
                    (on_error or _log.error)(f"{e}; running without the calibration button")
        return pipe

    # ---------------------------------------------------------------- reload
    def reload(self, cfg: Config) -> None:
        """New classifier + smoother (+ detector when [detect] changed) for `cfg`; EdgeError (nothing
        changed, nothing left open) when any of them cannot be built: the running stages go on."""
        old_cfg = self.cfg
        classifier = None
        try:
            classifier = build_classifier(cfg, self.calibration_required)
            smoother = build_smoother(cfg, classifier.labels)
            detector = build_detector(cfg) if old_cfg is None or cfg.detect != old_cfg.detect else self.detector
        except BaseException:
            if classifier is not None:
                classifier.close()
            raise
        old = self.classifier
        self.classifier, self.smoother, self.detector = classifier, smoother, detector
        old.close()
        if self.calibrate is not None and (old_cfg is None or cfg.calibrate != old_cfg.calibrate):
            self.calibrate.close()
            self.calibrate = build_calibrator(cfg, self, self.calibrate.state_dir)
        if self.adapt is not None:  # what was learned is saved and read back for the new model and settings
            self.adapt.close()
        self.adapt = build_learner(cfg, self, persist=True)
        if self.adapt is not None:
            self.adapt.reapply()
        self.cfg = cfg
        later = [s for s in RESTART_SECTIONS if old_cfg is not None and getattr(cfg, s) != getattr(old_cfg, s)]
        if later:
            _log.warning("changes to [%s] take effect after `sudo systemctl restart emotion-edge`", "], [".join(later))

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """What status.json says about the stages: the model in use and the per-person calibration."""
        clf = self.classifier
        path = str(clf.path) if clf.path else ""
        return {"model": {"path": str(Path(path).resolve()) if path else "", "sha256": clf.info.sha256,
                          "labels": list(clf.labels)},
                "calibration": self._calibration_status()}

    def _calibration_status(self) -> dict[str, Any] | None:
        """What `status` shows about the per-person calibration in use (and one being taken)."""
        applier = self.classifier.calibrator
        ctl = self.calibrate
        d: dict[str, Any] = {}
        if applier is not None:
            cal = applier.calibration
            d.update(created=cal.created, frames=cal.frames, source=cal.source,
                     file=str(ctl.cal_path) if ctl is not None else "")
        if self.adapt is not None:
            d["learned"] = self.adapt.describe()
        if ctl is not None and ctl.session is not None:
            d["running"] = True
        if ctl is not None and ctl.last is not None and not ctl.last.ok:
            d["last_failure"] = ctl.last.message
        return d or None

    # ---------------------------------------------------------------- close
    def close(self) -> None:
        for part in (self.calibrate, self.adapt, self.led, self.log, self.source, self.classifier, self.button):
            if part is None:
                continue
            try:
                part.close()
            except Exception as e:  # keep closing the rest; a half-closed device is worse
                _log.warning("closing %s failed: %s", type(part).__name__, e)


def build_classifier(cfg: Config, calibration_required: bool = False, multi_crop: bool | None = None,
                     calibrated: bool = True) -> EmotionClassifier:
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


def build_calibrator(cfg: Config, pipe: Pipeline, state_dir: Path, requests: bool = True) -> CalibrationController:
    """The loop's calibration part; it always works on the classifier the pipeline holds now (reloads swap it)."""
    from edge.calibrate import CalibrationController

    def model() -> tuple[str, tuple[str, ...]]:
        return pipe.classifier.info.sha256, tuple(pipe.classifier.labels)

    def apply(cal: Any) -> None:
        apply_calibration(pipe.classifier, cal, cfg)
        if cal is None and pipe.adapt is not None:  # `calibrate --reset` forgets the learned face too
            pipe.adapt.forget()
            pipe.adapt.reapply()

    return CalibrationController(state_dir, calibration_path(cfg), seconds=cfg.calibrate.seconds,
                                 min_frames=cfg.calibrate.min_frames, apply=apply, model=model, requests=requests)


def build_learner(cfg: Config, pipe: Pipeline, persist: bool) -> BaselineLearner | None:
    """The loop's learned resting face (None when off); `persist`: the service keeps it across restarts."""
    if not cfg.calibrate.learn or cfg.calibrate.strength <= 0:
        return None
    from edge.adapt import BaselineLearner

    clf = pipe.classifier
    return BaselineLearner(clf.info.sha256, clf.labels, half_life=cfg.calibrate.learn_half_life,
                           min_seconds=cfg.calibrate.learn_min_seconds,
                           apply=lambda cal: apply_learned(pipe.classifier, cal, cfg),
                           path=learned_baseline_path(cfg) if persist else None)


def build_smoother(cfg: Config, labels: tuple[str, ...]) -> MoodSmoother:
    from edge.mood import MoodSmoother

    return MoodSmoother(cfg.mood, labels)


def build_detector(cfg: Config) -> Detector:
    from edge.detect import FaceDetector, SkippingDetector

    if cfg.detect.mode == "track":
        from edge.track import TrackingDetector

        return TrackingDetector(FaceDetector(cfg.detect), cfg.detect)
    return SkippingDetector(FaceDetector(cfg.detect), cfg.detect.detect_every)


def _show_no_camera(led: Any, hold: float) -> None:
    """Light the no-camera colour (no fade) and keep it `hold` seconds, so the owner sees why it stopped."""
    t = time.monotonic()
    led.show_state("no_camera", t)
    led.show_state("no_camera", t + led.cfg.fade + 1.0)  # past the fade: the full colour now
    time.sleep(hold)
