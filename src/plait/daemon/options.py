"""The ``[options.daemon]`` table of ``profile.toml``, checked before a daemon starts.

The options (see docs/daemon.md)::

    [options.daemon]
    workers = 2          # workers of `plait daemon start` with no N
    slots = 200          # processes of a worker running step code at a time
    max_held = 4000      # processes a worker holds at most
    lease_seconds = 30   # how long the processes of a vanished host wait before another takes them
    poll_interval = 0.2  # seconds between looks at the database without a bell

A wrong value used to be found late: by a worker that crashed at start (and
was restarted, and crashed again) while ``plait daemon start`` said all was
well, or silently replaced by a default.  :func:`check_daemon_options` is
called by ``plait daemon start`` before the supervisor is spawned, and by the
supervisor before it takes its lock, so a bad table is one error naming the
option, the value and what it must be, and no supervisor is left behind.
An unknown key (a typo such as ``worker = 2``) is refused too, with the
known names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DAEMON_OPTIONS", "DaemonOptionsError", "check_daemon_options", "daemon_options_of"]


class DaemonOptionsError(ValueError):
    """An invalid ``[options.daemon]`` table; the message names the option and the value."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


#: each option: (check, what it must be).
DAEMON_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "workers": (_positive_int, "an integer >= 1"),
    "slots": (_positive_int, "an integer >= 1"),
    "max_held": (_positive_int, "an integer >= 1"),
    "lease_seconds": (_positive_number, "a number of seconds > 0"),
    "poll_interval": (_positive_number, "a number of seconds > 0"),
}


def check_daemon_options(options: Any) -> dict[str, Any]:
    """The ``[options.daemon]`` table, checked; ``{}`` when it is absent (``None``).

    Raises:
        DaemonOptionsError: the table is not a table, has an unknown key, or a value
            of the wrong type or range; naming ``options.daemon.<name>`` and the value.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise DaemonOptionsError(f"[options.daemon] must be a table, not {options!r}")
    for name, value in options.items():
        if name not in DAEMON_OPTIONS:
            raise DaemonOptionsError(
                f"unknown option options.daemon.{name}; known: {', '.join(sorted(DAEMON_OPTIONS))}"
            )
        check, expected = DAEMON_OPTIONS[name]
        if not check(value):
            raise DaemonOptionsError(f"options.daemon.{name} = {value!r} must be {expected}")
    return dict(options)


def daemon_options_of(profile: Any) -> dict[str, Any]:
    """The checked ``[options.daemon]`` table of ``profile`` (a :class:`plait.storage.Profile`).

    Raises:
        DaemonOptionsError: as :func:`check_daemon_options`, or the profile's
            ``[options]`` is not a table.
    """
    options = getattr(profile, "options", None)
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise DaemonOptionsError(f"[options] of profile '{profile.name}' must be a table, not {options!r}")
    return check_daemon_options(options.get("daemon"))
