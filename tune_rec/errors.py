"""Exceptions that the command line turns into exit codes and one-paragraph messages."""


class TuneRecError(Exception):
    """Base class of the errors that tune-rec reports without a traceback."""

    exit_code = 1


class InvalidInputError(TuneRecError, ValueError):
    """A search space, flag, config or data file that cannot be used as given (exit code 2)."""

    exit_code = 2


class DataError(InvalidInputError):
    """A ratings file that is missing, unreadable, malformed or fails its checksum."""


class ResourceError(TuneRecError):
    """A resource request (CPUs, GPUs) that the Ray cluster cannot satisfy."""

    exit_code = 2


class NonFiniteLossError(TuneRecError, FloatingPointError):
    """A loss or metric that became NaN or infinite during training."""


class SearchFailedError(TuneRecError):
    """A search that ended without any trial that finished."""


class SearchInterruptedError(TuneRecError):
    """A search stopped by the user (Ctrl-C) before every trial ended; it can be resumed."""

    exit_code = 130
