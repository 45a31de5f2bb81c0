"""One exception tree for hone.

Every error says what went wrong, where (a dotted config key or ``file:line``) and, where it
can, how to fix it.  Boundaries translate them once: the CLI prints one line and exits 2 (the
REST API, a later milestone, is to answer a 4xx JSON body in OpenAI's error shape).
"""

from __future__ import annotations

from dataclasses import dataclass


class HoneError(Exception):
    """Base of every error hone raises on purpose."""

    exit_code: int = 2


class ConfigError(HoneError):
    """A run configuration (YAML, CLI override, API or REST payload) is invalid."""


class DataError(HoneError):
    """Input data cannot be read or does not validate."""


class ModelError(HoneError):
    """A model cannot be found, loaded, converted or adapted."""


class ArtifactError(HoneError):
    """A run directory or artifact is missing, incomplete or would be overwritten."""


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file and 1-based line (or CSV row), and a field path."""

    file: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return where if self.field is None else f"{where}: {self.field}"


class RequestError(HoneError, ValueError):
    """A prediction or generation request is invalid: a parameter out of range, a message without text."""


class TrainError(HoneError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not match the run)."""
