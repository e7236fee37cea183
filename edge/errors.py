"""Project errors, one module, so every failure reaches the user as one actionable line."""


class EdgeError(Exception):
    """Base class: str(err) is a single line that names the problem and what to do."""


class ConfigError(EdgeError):
    """A config file or flag is wrong (names the key)."""


class ModelError(EdgeError):
    """A model or its metadata is missing, corrupt or disagrees with the contract."""


class SourceError(EdgeError):
    """A frame source cannot be opened or read."""


class SourceStalled(SourceError):
    """No frame arrived within the source's poll time (camera lost, hung or reconnecting)."""


class CameraNotFound(SourceError):
    """No camera is attached (or the device path does not exist)."""


class DetectorError(EdgeError):
    """The Haar cascade cannot be found or loaded."""


class FrameError(EdgeError):
    """A frame is empty, has the wrong shape or dtype."""


class LogError(EdgeError):
    """The local event log cannot be opened, read or written."""


class DataError(EdgeError):
    """A training/evaluation data file is malformed (names file and row)."""
