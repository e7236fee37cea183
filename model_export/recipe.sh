#!/usr/bin/env bash
# One command that reproduces the bundled model (edge/models/emotion.tflite + .json: the 1.0-width run
# warm-restarted with mixup and the 0.75-width run, each shown the face and its mirror image, under one
# new softmax head fitted on their features), its evaluation report, the lighter 0.75-width model (model_export/runs/edgenet48_ft/emotion.tflite) and the sample clip. Re-running resumes training from the last checkpoint (a finished run is kept).
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
FT=${RUN}_ft
"$PY" -m model_export.cli export "$FT/best.keras" --input-range 0,1 --representative-data "$DATA" \
    --representative-size 500 --out "$FT/emotion.tflite"
"$PY" -m model_export.cli evaluate --model "$FT/emotion.tflite" --data "$DATA" --split PrivateTest \
    --compare "$FT/best.keras" --compare-input-range 0,1 --latency --report-dir "$FT"
# the sample clip's faces are ones the 0.75-width model reads right (it was made with that model)
"$PY" -m model_export.make_sample --data "$DATA" --model "$FT/emotion.tflite"

W1=model_export/runs/edgenet48_w1
"$PY" -m model_export.cli train --data "$DATA" --out "$W1" --width 1.0 --epochs 60 --lr 3e-3 --batch-size 128 \
    --label-smoothing 0.1 --class-weight-power 0.3 --seed 4242 --patience 60
MIX=${W1}_mix
"$PY" -m model_export.cli train --data "$DATA" --out "$MIX" --init-from "$W1/best.keras" --width 1.0 --epochs 8 \
    --lr 1e-3 --batch-size 128 --label-smoothing 0.1 --class-weight-power 0.3 --mixup 0.2 --seed 5151 --patience 60
# the bundled model (since 2026-12-06): both nets' features, each averaged over the face and its mirror
# image, under one new head fitted on Training (l2 0.3; PublicTest printed for each l2)
RE=model_export/runs/rehead_w1mix_ft
"$PY" -m model_export.cli rehead "$MIX/best.keras" "$FT/best.keras" --data "$DATA" --l2 0.3 0.1 1 --out "$RE/rehead.keras"
"$PY" -m model_export.cli export "$RE/rehead.keras" --representative-data "$DATA" \
    --representative-size 500 --crop-margin 0.05 --out edge/models/emotion.tflite
"$PY" -m model_export.cli evaluate --model edge/models/emotion.tflite --data "$DATA" --split PrivateTest \
    --compare "$RE/rehead.keras" --latency --report-dir "$RE"
