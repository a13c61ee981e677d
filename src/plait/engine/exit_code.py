"""Exit codes: how a finished process says whether it succeeded and, if not, why.

``0`` is success.  Each process class declares its non-zero codes with
``spec.exit_code(status, label, message)`` and reaches them as
``self.exit_codes.LABEL``.  A message may hold ``{placeholders}`` filled with
:meth:`ExitCode.format`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = ["ExitCode", "ExitCodesNamespace"]


class ExitCode(NamedTuple):
    """A status (0 = success), a message and a label."""

    status: int = 0
    message: str | None = None
    label: str | None = None
    invalidates_cache: bool = False

    def format(self, **kwargs: Any) -> ExitCode:
        """A copy whose message has its ``{placeholders}`` filled.

        Raises:
            ValueError: a placeholder of the message was not given.
        """
        try:
            message = (self.message or "").format(**kwargs)
        except KeyError as exc:
            raise ValueError(f"exit code {self.label}: message needs the value {exc}") from None
        return self._replace(message=message)


class ExitCodesNamespace:
    """The exit codes of a process class, by label (``exit_codes.ERROR_X``) or by status."""

    def __init__(self) -> None:
        self._codes: dict[str, ExitCode] = {}

    def add(self, code: ExitCode) -> None:
        assert code.label is not None
        for existing in self._codes.values():
            if existing.status == code.status and existing.label != code.label:
                raise ValueError(
                    f"exit status {code.status} is used by both {existing.label} and {code.label}"
                )
        self._codes[code.label] = code

    def __getattr__(self, label: str) -> ExitCode:
        if label.startswith("_"):
            raise AttributeError(label)
        try:
            return self._codes[label]
        except KeyError:
            raise AttributeError(
                f"no exit code '{label}' (defined: {', '.join(sorted(self._codes)) or 'none'})"
            ) from None

    def __call__(self, status_or_label: int | str) -> ExitCode:
        """Look an exit code up by status or label."""
        for code in self._codes.values():
            if status_or_label in (code.status, code.label):
                return code
        raise KeyError(f"no exit code {status_or_label!r}")

    def __iter__(self) -> Iterator[ExitCode]:
        return iter(sorted(self._codes.values()))

    def __contains__(self, label: object) -> bool:
        return label in self._codes

    def copy(self) -> ExitCodesNamespace:
        new = ExitCodesNamespace()
        new._codes = dict(self._codes)
        return new
