"""One exception type for bad input, so the CLI can print one clear line and exit non-zero."""

from __future__ import annotations


class HicmixError(Exception):
    """Bad input or configuration: the message names the file, what is wrong and the fix.

    The CLI prints ``error: <message>`` on one line and exits with status 1, without a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class InputError(HicmixError):
    """A data file (Hi-C, bigWig, BEDPE, gene table, checkpoint) is unusable."""


class ConfigError(HicmixError):
    """The config or one of its sheets is invalid."""


class DownloadError(HicmixError):
    """A source could not be fetched or failed its checksum."""
