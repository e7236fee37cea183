"""Builds the loop's parts from a Config; the service and the CLI share this one start-up order."""
from __future__ import annotations

from typing import Any

from edge.config import Config, db_path
from edge.loop import Parts


def build_classifier(cfg: Config):
    from edge.classify import EmotionClassifier, resolve_model

    return EmotionClassifier(resolve_model(cfg.classify.model), num_threads=cfg.classify.num_threads,
                             flip_average=cfg.classify.flip_average)


def build_smoother(cfg: Config, labels: tuple[str, ...]):
    from edge.mood import MoodSmoother

    return MoodSmoother(cfg.mood, labels)


def build_detector(cfg: Config):
    from edge.detect import FaceDetector, SkippingDetector

    if cfg.detect.mode == "track":
        from edge.track import TrackingDetector

        return TrackingDetector(FaceDetector(cfg.detect), cfg.detect)
    return SkippingDetector(FaceDetector(cfg.detect), cfg.detect.detect_every)


def build_parts(cfg: Config, *, pin_factory: Any = None, camera_factory: Any = None, with_log: bool = True) -> Parts:
    """Model and detector first (cheap to fail, nothing to undo), then the LED, log and camera."""
    from edge.eventlog import EventLog
    from edge.led import make_led
    from edge.resilient import wrap_camera
    from edge.sources import open_source

    classifier = build_classifier(cfg)
    detector = build_detector(cfg)
    smoother = build_smoother(cfg, classifier.labels)
    led = log = source = None
    try:
        led = make_led(cfg.led, pin_factory=pin_factory)
        log = EventLog(db_path(cfg), cfg.log) if with_log else None
        source = open_source(cfg.source, camera_factory=camera_factory)
        source = wrap_camera(source, cfg.source, camera_factory=camera_factory)  # cameras only: files still end
    except BaseException:
        Parts(source, detector, classifier, smoother, led, log).close()
        raise
    return Parts(source, detector, classifier, smoother, led, log)
