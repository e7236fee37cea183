"""Feature distillation for `train --feature-weight`: the student also learns to reproduce the teacher's
features of each Training face, through a linear map used only in training.

Why: four students distilled from the bundled model's outputs on FER2013 came closer to its FER2013
accuracy but read real people calibrated worse (model_export/runs/README.md, `edgenet48_w1s_kd`); what
the bundled model holds about real faces sits in its nets' features ("Headroom", docs/CALIBRATION.md),
which its seven output probabilities do not carry. The map is dropped at every checkpoint that export
reads: best.keras is the classifier alone; last.keras (to resume) keeps it.

Targets are one row per face, [class targets | standardised teacher features], so mixup blends both
alike and the batches need no second output.
"""
from __future__ import annotations

import keras
import numpy as np

from edge.errors import ModelError

FEATURE_MAP = "feature_map"
POOLED = "gap"  # arch.build_model's pooled features, the input of its dropout and softmax head
SUFFIX = "_fkd"


def standardise(features: np.ndarray) -> np.ndarray:
    """Each feature to mean 0 and standard deviation 1 over the Training faces, so every one weighs alike
    in the squared error (a constant feature stays 0)."""
    f = np.asarray(features, np.float64)
    sd = f.std(axis=0)
    return ((f - f.mean(axis=0)) / np.where(sd > 1e-6, sd, 1.0)).astype(np.float32)


def training_model(classifier, n_features: int):
    """The classifier with a linear map from its pooled features to the teacher's, outputs side by side."""
    try:
        pooled = classifier.get_layer(POOLED).output
    except ValueError:
        raise ModelError(f"{classifier.name}: no '{POOLED}' layer to map to the teacher's features; "
                         "--feature-weight trains nets built by `train` (or --init-from one of their checkpoints)") from None
    mapped = keras.layers.Dense(n_features, name=FEATURE_MAP)(pooled)
    both = keras.layers.Concatenate(name="probs_and_features")([classifier.output, mapped])
    return keras.Model(classifier.input, both, name=classifier.name + SUFFIX)


def classifier_of(model):
    """The net that export reads: the model itself, or a training model less its feature map."""
    if FEATURE_MAP not in {layer.name for layer in model.layers}:
        return model
    head = model.get_layer("probs_and_features").input[0]
    name = model.name[:-len(SUFFIX)] if model.name.endswith(SUFFIX) else model.name
    return keras.Model(model.input, head, name=name)


@keras.saving.register_keras_serializable(package="emotion_edge")
class FeatureDistillLoss(keras.losses.Loss):
    """Cross-entropy on the class columns (label smoothing; each face weighted by its target's top class,
    as Keras' class_weight does) plus `weight` x the mean squared error on the feature columns."""

    def __init__(self, n_classes: int, weight: float, label_smoothing: float = 0.0,
                 class_weights: list[float] | None = None, name: str = "feature_distill", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes, self.weight, self.label_smoothing = int(n_classes), float(weight), float(label_smoothing)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        ops, n = keras.ops, self.n_classes
        target = y_true[:, :n]
        ce = keras.losses.categorical_crossentropy(target, y_pred[:, :n], label_smoothing=self.label_smoothing)
        if self.class_weights is not None:
            ce = ce * ops.take(ops.convert_to_tensor(self.class_weights, dtype=ce.dtype), ops.argmax(target, axis=-1))
        return ce + self.weight * ops.mean(ops.square(y_true[:, n:] - y_pred[:, n:]), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "n_classes": self.n_classes, "weight": self.weight,
                "label_smoothing": self.label_smoothing, "class_weights": self.class_weights}


def _class_accuracy(y_true, y_pred, n_classes: int):
    ops = keras.ops
    return ops.cast(ops.equal(ops.argmax(y_true[:, :n_classes], axis=-1), ops.argmax(y_pred[:, :n_classes], axis=-1)),
                    "float32")


@keras.saving.register_keras_serializable(package="emotion_edge")
class ClassAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy on the class columns alone (logged as 'accuracy', as without feature distillation)."""

    def __init__(self, n_classes: int, name: str = "accuracy", dtype=None):
        super().__init__(fn=_class_accuracy, name=name, dtype=dtype, n_classes=int(n_classes))
        self.n_classes = int(n_classes)

    def get_config(self) -> dict:
        return {"n_classes": self.n_classes, "name": self.name, "dtype": self.dtype}


def compile_for_features(model, n_classes: int, weight: float, optimizer, label_smoothing: float,
                         class_weights: list[float] | None) -> None:
    model.compile(optimizer=optimizer, loss=FeatureDistillLoss(n_classes, weight, label_smoothing, class_weights),
                  metrics=[ClassAccuracy(n_classes)])
