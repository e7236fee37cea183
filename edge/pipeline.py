"""The pipeline: the one owner of the stages the loop drives. It builds them from a Config (one start-up
order for the service and every command), reloads what a new config or model changes (keeping the
running stages when anything fails), describes them for `status` and closes them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge.calibration import CalibrationStage
from edge.config import Config, calibration_path, db_path, learned_baseline_path
from edge.types import Detector, Source

if TYPE_CHECKING:
    from edge.classify import EmotionClassifier
    from edge.eventlog import EventLog
    from edge.led import MoodLight
    from edge.mood import MoodSmoother
    from edge.viewshare import FrameShare

_log = logging.getLogger("emotion-edge")

RESTART_SECTIONS = ("source", "led", "log")
"""Config sections a reload cannot apply (the camera, the LED pins and the log stay open)."""


@dataclass
class Pipeline:
    """Everything the loop drives, in the order frames flow; close() releases all of it, safe twice.

    The positional order (source, detector, classifier, smoother, led, eventlog) builds one by hand with
    `calibration` passing predictions through; `build()` is how the service and the commands get one.
    """

    source: Source
    detector: Detector
    classifier: EmotionClassifier
    smoother: MoodSmoother
    led: MoodLight
    eventlog: EventLog | None = None               # the SQLite mood log (not a logging.Logger)
    calibration: CalibrationStage = field(default_factory=CalibrationStage)  # between classifier and smoother
    cfg: Config | None = None                       # what it was built or last reloaded from
    calibration_required: bool = False              # an explicit --calibration PATH: any problem is an error
    share: FrameShare | None = None                 # frames for `emotion-edge view`, only while one asks (service)

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

        classifier = build_classifier(cfg)
        eventlog = source = None
        try:
            calibration = build_calibration(cfg, classifier, calibration_required)
            detector = build_detector(cfg)
            smoother = build_smoother(cfg, classifier.labels)
        except BaseException:
            classifier.close()
            raise
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
            eventlog = EventLog(db_path(cfg), cfg.log) if with_log else None
        except BaseException:
            cls(source, detector, classifier, smoother, led, eventlog).close()  # type: ignore[arg-type]
            raise
        pipe = cls(source, detector, classifier, smoother, led, eventlog, calibration, cfg=cfg,
                   calibration_required=calibration_required)
        if with_log:  # a loop that logs is one a calibration can be asked of (the service, `run`)
            calibration.add_learner(learned_baseline_path(cfg) if state_dir is not None else None)
            calibration.add_capture(state_dir or db_path(cfg).parent, calibration_path(cfg), requests=state_dir is not None)
            if cfg.calibrate.button_pin >= 0:
                from edge.calibration.button import ButtonError

                try:
                    calibration.add_button(cfg.calibrate.button_pin, pin_factory)
                except ButtonError as e:  # like the LED: the mood light is still worth running without it
                    (on_error or _log.error)(f"{e}; running without the calibration button")
        if state_dir is not None:  # the service, which holds the camera: `emotion-edge view` asks it for frames
            from edge.viewshare import FrameShare

            pipe.share = FrameShare(state_dir, detect=cfg.detect)
        return pipe

    # ---------------------------------------------------------------- reload
    def reload(self, cfg: Config) -> None:
        """New classifier, calibration for it, smoother (+ detector when [detect] changed) for `cfg`;
        EdgeError (nothing changed, nothing left open) when any of them cannot be built: the running
        stages go on."""
        old_cfg = self.cfg
        classifier = None
        try:
            classifier = build_classifier(cfg)
            calibration = build_calibration(cfg, classifier, self.calibration_required)
            smoother = build_smoother(cfg, classifier.labels)
            detector = build_detector(cfg) if old_cfg is None or cfg.detect != old_cfg.detect else self.detector
        except BaseException:
            if classifier is not None:
                classifier.close()
            raise
        old = self.classifier
        self.classifier, self.smoother, self.detector = classifier, smoother, detector
        old.close()
        self.calibration.reload(calibration)
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
                "calibration": self.calibration.status()}

    # ---------------------------------------------------------------- close
    def close(self) -> None:
        for part in (self.share, self.calibration, self.led, self.eventlog, self.source, self.classifier):
            if part is None:
                continue
            try:
                part.close()
            except Exception as e:  # keep closing the rest; a half-closed device is worse
                _log.warning("closing %s failed: %s", type(part).__name__, e)


def build_classifier(cfg: Config, multi_crop: bool | None = None) -> EmotionClassifier:
    """The configured model's classifier (the model's own answers: calibration is the next stage).
    `multi_crop` None: as configured (`classify.multi_crop`)."""
    from edge.classify import EmotionClassifier, resolve_model

    return EmotionClassifier(resolve_model(cfg.classify.model), num_threads=cfg.classify.num_threads,
                             flip_average=cfg.classify.flip_average,
                             multi_crop=cfg.classify.multi_crop if multi_crop is None else multi_crop)


def build_calibration(cfg: Config, classifier: EmotionClassifier, required: bool = False) -> CalibrationStage:
    """The calibration stage for this classifier's model with this person's calibration when one exists.

    A missing default calibration is normal; one made for another model is ignored with a warning;
    `required` (an explicit --calibration PATH) makes any problem an error. Nothing is applied with
    [calibrate] strength = 0 (`--no-calibration`).
    """
    return CalibrationStage.from_file(calibration_path(cfg), classifier.info.sha256, classifier.labels, cfg.calibrate,
                                      required=required, crop_margin=classifier.info.input.crop_margin)


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
