#!/usr/bin/env bash
# One command that reproduces the bundled model (edge/models/emotion.tflite + .json), its
# evaluation report and the sample clip. Re-running resumes training from the last checkpoint.
#   model_export/recipe.sh [path/to/fer2013.npz]      (needs: pip install '.[export]')
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/fer2013/fer2013.npz}
RUN=model_export/runs/edgenet48
PY=${PYTHON:-python}

"$PY" -m model_export.cli train --data "$DATA" --out "$RUN" --epochs 25 --width 0.75 --batch-size 128 \
    --lr 3e-3 --label-smoothing 0.1 --class-weight-power 0.3 --seed 1234
"$PY" -m model_export.cli train --data "$DATA" --out "${RUN}_ft" --init-from "$RUN/best.keras" --epochs 10 \
    --lr 1e-3 --width 0.75 --batch-size 128 --label-smoothing 0.1 --class-weight-power 0.3 --seed 1234
RUN=${RUN}_ft
"$PY" -m model_export.cli export "$RUN/best.keras" --input-range 0,1 --calibration-data "$DATA" \
    --calibration-size 500 --out edge/models/emotion.tflite
"$PY" -m model_export.cli evaluate --model edge/models/emotion.tflite --data "$DATA" --split PrivateTest \
    --compare "$RUN/best.keras" --compare-input-range 0,1 --latency --report-dir "$RUN"
"$PY" -m model_export.make_sample --data "$DATA" --model edge/models/emotion.tflite
