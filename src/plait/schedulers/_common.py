"""Small helpers shared by the scheduler plugins (not part of the public contract)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(?:(?P<days>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)\Z")
_UNSAFE_HEADER_VALUE = re.compile(r"[\s'\"\\#`$;&|<>()]|[\x00-\x1f\x7f]")


def parse_duration(text: str | None) -> int | None:
    """Seconds in a ``[[days-]hours:]minutes:seconds`` duration (SLURM, ``ps etime``, PBS walltime).

    Hours may exceed 24 (PBS writes ``100:00:00``).  Anything else (``UNLIMITED``,
    ``INVALID``, ``N/A``, empty) gives ``None``: a missing optional detail is not an error.
    """
    if not text:
        return None
    match = _DURATION.match(text.strip())
    if match is None:
        return None
    days = int(match["days"] or 0)
    hours = int(match["h"] or 0)
    return ((days * 24 + hours) * 60 + int(match["m"])) * 60 + int(match["s"])


def format_hms(seconds: int) -> str:
    """``HH:MM:SS`` with hours that may exceed 24 (PBS's walltime notation)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def check_header_value(field: str, value: str) -> str:
    """Refuse a queue/account/qos value that could not sit safely in a scheduler directive.

    Such names never contain white space, quotes or shell punctuation; one that
    does is a typo or an injection, and is refused before anything is submitted.

    Raises:
        ValueError: naming the template field and the value.
    """
    if _UNSAFE_HEADER_VALUE.search(value):
        raise ValueError(
            f"JobTemplate.{field}={value!r} contains white space, a quote or shell punctuation,"
            " which no scheduler accepts in that field"
        )
    return value


def sanitize_job_name(name: str, *, max_length: int, default: str = "plait-job") -> str:
    """Keep letters, digits, ``_``, ``-`` and ``.``; replace anything else by ``_``; truncate.

    An empty result becomes ``default``.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:max_length]
    return cleaned or default
