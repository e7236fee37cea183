"""The calibration stage: between the classifier and the smoother, the model's own predictions in, this
person's calibrated predictions out.

Which calibration applies is decided here and nowhere else, by where it came from: an explicit one
(the calibration file, or a capture taken while running) whenever there is one, else the resting face
learned while watching once it is ready, else none (predictions pass through unchanged). The stage
also runs the parts that make calibrations while the loop runs: the capture (a request file or the
button starts it; the LED shows it), the learner and the button; all of them see the model's own
answers, never calibrated ones.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.calibration.apply import CalibrationApplier
from edge.calibration.capture import CalibrationController
from edge.calibration.file import Calibration, for_model, load_for
from edge.calibration.learned import Learner
from edge.calibration.look import Looker
from edge.config import CalibrateConfig
from edge.types import Box, Prediction

log = logging.getLogger("emotion-edge")

Faces = list[tuple[Box, Prediction]]
"""(box, prediction) of each face classified on a frame, largest first."""


class CalibrationStage:
    """Takes the classifier's predictions and gives calibrated ones (`apply`, `update`).

    Bound to one model (`sha256`, `labels`): every calibration it applies is that model's. Built with
    no model and no calibration, it passes predictions through (a pipeline assembled by hand).
    """

    def __init__(self, sha256: str = "", labels: Sequence[str] = (), *, settings: CalibrateConfig | None = None,
                 explicit: Calibration | None = None, crop_margin: float = 0.0) -> None:
        self.model: tuple[str, tuple[str, ...]] = (sha256, tuple(labels))
        self.looker = Looker(crop_margin)  # a face's look, for a profile with taught expressions
        self.settings = settings if settings is not None else CalibrateConfig()
        self._explicit: CalibrationApplier | None = None
        self._learned: CalibrationApplier | None = None
        self.capture: CalibrationController | None = None   # takes a calibration on request or button press
        self.learner: Learner | None = None                 # learns the resting face while watching
        self.button: Any = None                             # edge.calibration.button.CalibrateButton
        self._learned_path: Path | None = None
        self._learning = False
        self.use(explicit)

    @classmethod
    def from_file(cls, path: Path, sha256: str, labels: Sequence[str], settings: CalibrateConfig, *,
                  required: bool, crop_margin: float = 0.0) -> CalibrationStage:
        """The stage for this model with the calibration at `path` when it fits (none with strength 0).

        A missing default file is normal; one made for another model is ignored with a warning;
        `required` (an explicit --calibration PATH) makes any problem a CalibrationError.
        """
        cal = load_for(path, sha256, labels, required=required) if settings.strength > 0 else None
        return cls(sha256, labels, settings=settings, explicit=cal, crop_margin=crop_margin)

    # ---------------------------------------------------------------- what applies
    @property
    def applier(self) -> CalibrationApplier | None:
        """The calibration applied now: explicit beats learned; None: predictions pass unchanged."""
        return self._explicit if self._explicit is not None else self._learned

    def use(self, cal: Calibration | None) -> None:
        """An explicit calibration from now on (CalibrationError if it is another model's). None:
        `calibrate --reset`, no explicit calibration, and the learned resting face is forgotten too."""
        if cal is None:
            self._explicit = self._learned = None
            if self.learner is not None:
                self.learner.forget()
            return
        for_model(cal, *self.model, "calibration")
        self._explicit = CalibrationApplier(cal, self.settings.strength, self.settings.neutral_margin, self.settings.rest_spread)

    @property
    def explicit(self) -> Calibration | None:
        """The explicit calibration (profile) in use, if any."""
        return self._explicit.calibration if self._explicit is not None else None

    def _use_learned(self, cal: Calibration) -> None:
        # the mean holds expressions too: a smaller neutral head start than an explicit calibration's
        self._learned = CalibrationApplier(cal, self.settings.strength, self.settings.learn_neutral_margin)

    # ---------------------------------------------------------------- per prediction, per frame
    @property
    def needs_look(self) -> bool:
        """Whether `apply` wants each face's look (a profile with taught expressions is in use)."""
        applier = self.applier
        return applier is not None and applier.needs_look

    def apply(self, pred: Prediction, look: np.ndarray | None = None) -> Prediction:
        """The calibrated prediction (a new one; `pred`, the model's own answer, is left as it is); `look`:
        the face's look (look.py), which a profile with taught expressions reads it by."""
        applier = self.applier
        if applier is None:
            return pred
        return Prediction(applier.apply(pred.probs.copy(), look), pred.labels)

    def update(self, t: float, n_faces: int, faces: Faces | None,
               image: np.ndarray | None = None) -> tuple[Faces | None, str | None]:
        """Per frame: the model's answers for the faces classified on it (None: none this frame) in, the
        calibrated ones out, with the LED state to show instead of the mood while a capture runs or has
        just ended (else None). The learner and the capture see the model's own answers. `image`, the
        grey frame, gives each face's look where a profile or a capture wants it (else it is not read)."""
        calibrated = None
        capturing = self.capture is not None and self.capture.session is not None
        looks = None
        if faces and image is not None and (capturing or self.needs_look):
            looks = [self.looker.of(image, box) for box, _ in faces]
        if faces:
            calibrated = [(box, self.apply(pred, looks[i] if looks else None)) for i, (box, pred) in enumerate(faces)]
            if self.learner is not None:
                self.learner.feed(t, faces[0][1])   # the largest face
        led_state = self.capture.feed(t, n_faces, faces, looks[0] if looks else None) if self.capture is not None else None
        return calibrated, led_state

    # ---------------------------------------------------------------- the parts that make calibrations
    def add_capture(self, state_dir: Path, cal_path: Path, *, requests: bool) -> CalibrationController:
        """Capture on request: `requests` polls the request files in `state_dir` (the service); a capture
        that succeeds is saved to `cal_path` and applied from then on."""
        s = self.settings
        self.capture = CalibrationController(state_dir, cal_path, seconds=s.seconds, min_frames=s.min_frames,
                                             apply=self.use, model=lambda: self.model, requests=requests,
                                             current=lambda: self.explicit)
        return self.capture

    def add_learner(self, path: Path | None) -> None:
        """Learn the resting face while watching (when [calibrate] learn and strength allow); `path`: the
        file that keeps it across restarts (the service), None: for this run only."""
        self._learning, self._learned_path = True, path
        s = self.settings
        if s.learn and s.strength > 0:
            self.learner = Learner(self.model[0], self.model[1], half_life=s.learn_half_life,
                                   min_seconds=s.learn_min_seconds, apply=self._use_learned, path=path)

    def add_button(self, pin: int, pin_factory: Any = None) -> None:
        """A push button that starts a capture (ButtonError when its pin cannot be used)."""
        from edge.calibration.button import CalibrateButton

        self.button = CalibrateButton(pin, self._start_soon, pin_factory)

    def _start_soon(self) -> None:
        if self.capture is not None:
            self.capture.start_soon()

    # ---------------------------------------------------------------- reload, status, close
    def reload(self, fresh: CalibrationStage) -> None:
        """Take over a reload's new model, settings and calibration from `fresh` (a stage built for them),
        keeping this one's parts: what was learned is saved and read back for the new model (another
        model's is learned afresh) and used at once; the capture is restarted only when [calibrate]
        changed (one running then reports that it was interrupted)."""
        changed = fresh.settings != self.settings
        self.model, self.settings, self.looker = fresh.model, fresh.settings, fresh.looker
        self._explicit, self._learned = fresh._explicit, None
        if self.capture is not None and changed:
            self.capture.close()
            self.add_capture(self.capture.state_dir, self.capture.cal_path, requests=self.capture.requests)
        if self._learning:
            if self.learner is not None:
                self.learner.close()
                self.learner = None
            self.add_learner(self._learned_path)
            if self.learner is not None:
                self.learner.reapply()

    def status(self) -> dict[str, Any] | None:
        """What status.json says about the calibration in use (and one being taken); None: nothing."""
        applier, ctl = self.applier, self.capture
        d: dict[str, Any] = {}
        if applier is not None:
            cal = applier.calibration
            d.update(created=cal.created, frames=cal.frames, source=cal.source,
                     file=str(ctl.cal_path) if ctl is not None else "")
            if cal.expressions or not cal.has_rest:
                d["taught"] = cal.taught()
                d["profile"] = cal.describe_taught()
        if self.learner is not None:
            d["learned"] = self.learner.describe()
        if ctl is not None and ctl.session is not None:
            d["running"] = True
        if ctl is not None and ctl.last is not None and not ctl.last.ok:
            d["last_failure"] = ctl.last.message
        return d or None

    def close(self) -> None:
        """A capture cut short reports failure, the learner saves, the button lets go of its pin; safe twice."""
        for part in (self.capture, self.learner, self.button):
            if part is None:
                continue
            try:
                part.close()
            except Exception as e:  # keep closing the rest
                log.warning("closing %s failed: %s", type(part).__name__, e)
