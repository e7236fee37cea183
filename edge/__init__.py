"""emotion-edge: the on-device mood light. Never imports TensorFlow or Keras."""

__version__ = "0.1.0"
