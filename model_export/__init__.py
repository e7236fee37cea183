"""emotion-export: the desktop side (train, export to int8 TFLite, evaluate, deploy)."""

__version__ = "0.1.0"
