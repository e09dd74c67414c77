"""Typed exceptions. The CLI turns each into one line and a non-zero exit code."""

from __future__ import annotations


class SpkreconError(Exception):
    """Base class of every error spkrecon raises on purpose.

    ``exit_code`` is what the CLI exits with; ``hint`` is an optional "what to do" sentence.
    """

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}; {self.hint}" if self.hint else msg


class InputError(SpkreconError):
    """An input file is missing, unreadable or malformed."""

    exit_code = 2


class RecordingFormatError(InputError):
    """A recording's bytes or array do not fit the expected layout."""


class ParameterError(SpkreconError):
    """A parameter value is out of range or inconsistent with the input."""

    exit_code = 2


class UnknownNameError(ParameterError):
    """A name (method, metric, weights) is not registered."""


class OutputError(SpkreconError):
    """The output cannot be written (exists without ``force``, unwritable folder...)."""

    exit_code = 3


class WeightsError(SpkreconError):
    """Network weights are missing or incompatible."""

    exit_code = 4


class DeviceError(SpkreconError):
    """A requested device or precision is not available."""

    exit_code = 5


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (partial outputs are removed), and the
    CLI exits ``128 + signum`` (143 for SIGTERM, 129 for SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        import signal

        return f"terminated by {signal.Signals(self.signum).name}"
