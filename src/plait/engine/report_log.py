"""Report lines (``self.report(...)``) through :mod:`logging`, and on the console of a script.

Every report line is stored on its process node (``plait process report PK``)
and also logged, as it happens, on the logger ``plait.report`` at the level
:data:`REPORT` (23, between INFO and WARNING, the level AiiDA users know from
``verdi process report``)::

    2026-12-02 09:52:46 REPORT [12|AddTwice|first]: partial sum is 41

Where the lines go:

* **a script or a notebook** that runs a process in its own interpreter
  (``plait.run``, ``run_get_node``, ``arun``, ``resume``): on the first such
  launch plait puts a handler on ``plait.report`` that writes to ``stderr``,
  at the level ``$PLAIT_LOG_LEVEL`` names (``REPORT`` by default; ``DEBUG``,
  ``INFO``, ``WARNING``... or a number), and stops the lines from going on to
  the root logger, so none is shown twice;
* **unless logging is configured already**: when the root logger or
  ``plait.report`` has a handler at that moment (``logging.basicConfig``,
  ``dictConfig``, pytest), plait adds nothing and your configuration
  decides, level included;
* **a daemon worker** never adds the console handler: its report lines go
  to the worker's own log file, once, through the worker's logging set-up.

To silence the console: ``PLAIT_LOG_LEVEL=WARNING``, or
``logging.getLogger("plait.report").setLevel(logging.WARNING)`` (plait sets
the level only while it is unset), or ``.disabled = True``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

__all__ = ["LOGGER_NAME", "REPORT", "enable_console_reports", "log_report"]

#: the level of report lines (AiiDA's REPORT level)
REPORT = 23
logging.addLevelName(REPORT, "REPORT")
LOGGER_NAME = "plait.report"
FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_logger = logging.getLogger(LOGGER_NAME)
_lock = threading.Lock()
_decided = False


def log_report(pk: int | None, process_label: str, step: str | None, text: str) -> None:
    """Log one report line of process ``pk`` (``[pk|Label|step]: text``) on ``plait.report``."""
    _logger.log(
        REPORT,
        "[%s|%s|%s]: %s",
        pk,
        process_label,
        step or "-",
        text,
        extra={"plait_pk": pk, "plait_process_label": process_label, "plait_step": step},
    )


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is when a line is emitted (a redirected or captured stderr)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def level_from_environment() -> int:
    """The level ``$PLAIT_LOG_LEVEL`` names (a level name or a number), REPORT when unset or unknown."""
    value = os.environ.get("PLAIT_LOG_LEVEL", "").strip()
    if not value:
        return REPORT
    if value.lstrip("-").isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    if isinstance(level, int):
        return level
    logging.getLogger("plait").warning(
        "PLAIT_LOG_LEVEL=%r is not a logging level (DEBUG, INFO, REPORT, WARNING, ERROR): using REPORT", value
    )
    return REPORT


def enable_console_reports() -> None:
    """Show report lines on ``stderr`` in this interpreter, unless logging is configured (see module).

    Called by the launch functions on a top-level launch; decides once per
    interpreter, never raises.
    """
    global _decided
    if _decided:
        return
    with _lock:
        if _decided:
            return
        _decided = True
        if _logger.handlers or logging.getLogger().handlers:
            return  # the user's (or the test runner's) logging configuration decides
        if _logger.level == logging.NOTSET:
            _logger.setLevel(level_from_environment())
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        _logger.addHandler(handler)
        _logger.propagate = False
