"""Per-person calibration: read one person's expressions relative to their own resting face, and to the
expressions they taught it (an expression profile).

One stage between the classifier and the smoother (`CalibrationStage`, stage.py) takes the model's
predictions and gives calibrated ones. The package's modules, one job each:

- file.py: the calibration file (`Calibration`, `save`, `load`, `load_for`; JSON, bound to the model's sha256)
- apply.py: how a calibration applies to a prediction (`CalibrationApplier`)
- profile.py: taught expressions and how a profile reads a face (`Taught`, `TaughtReader`)
- look.py: a face's look, which a profile compares (`Looker`)
- teach.py: what one photo teaches (`calibrate --photos`, `calibration-report --teach`)
- capture.py: taking one from live frames (`CalibrationSession`, `CalibrationController`)
- requests.py: the request files through which `emotion-edge calibrate` asks the running service
- learned.py: the resting face learned while watching (`LearnedBaseline`, `Learner`, its file)
- button.py: the optional push button that starts a capture

The file format's names are importable from the package itself (`from edge.calibration import load`).
"""
from __future__ import annotations

from edge.calibration.apply import CalibrationApplier
from edge.calibration.file import (KIND, MAX_FILE_BYTES, PROB_FLOOR, SMILE_MIN, VERSION, Calibration, CalibrationError,
                                   for_model, load, load_for, log_probs, make_calibration, parse, remove_if_ours, save,
                                   smiling)
from edge.calibration.stage import CalibrationStage

__all__ = ["KIND", "MAX_FILE_BYTES", "PROB_FLOOR", "SMILE_MIN", "VERSION", "Calibration", "CalibrationApplier",
           "CalibrationError", "CalibrationStage", "for_model", "load", "load_for", "log_probs", "make_calibration",
           "parse", "remove_if_ours", "save", "smiling"]
