"""Launch-time checks of a calculation's ``metadata.options`` against its computer's scheduler.

A calculation job's options (wall time, memory, resources, environment, file
names...) are only turned into a job script after the calculation was
stored, so a value the scheduler cannot honour would fail after the fact: a
process recorded, then excepted or paused.  :func:`check_job_options` runs
when the calculation is launched, after the spec validated the inputs'
types and before anything is stored, and asks the scheduler plugin of the
computer the job will run on (:meth:`plait.schedulers.Scheduler.validate_job_options`,
which a plugin may extend).  A refusal is an
:class:`~plait.engine.ports.InputValidationError` naming the option
(``metadata.options.max_wallclock_seconds``) and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.engine.ports import InputValidationError
from plait.orm.code import InstalledCode
from plait.orm.computer import Computer
from plait.orm.errors import NotExistentError

__all__ = ["check_job_options"]


def _computer_of(inputs: Mapping[str, Any]) -> Computer:
    code = inputs.get("code")
    if isinstance(code, InstalledCode):
        return code.computer
    return Computer.get(inputs.get("metadata", {}).get("computer"))


def check_job_options(process_label: str, inputs: Mapping[str, Any]) -> None:
    """Refuse options the computer's scheduler cannot honour; nothing is stored yet.

    ``inputs`` are the calculation's inputs as processed by its spec.

    Raises:
        InputValidationError: one error naming ``metadata.options.<option>``, the
            value and the reason; or naming ``metadata.computer`` when the computer
            does not exist or its scheduler options are invalid.
    """
    from plait.schedulers import InvalidJobOptionError

    options = dict(inputs.get("metadata", {}).get("options", {}))
    try:
        scheduler = _computer_of(inputs).get_scheduler()
    except NotExistentError as exc:
        raise InputValidationError(process_label, [("metadata.computer", str(exc))]) from None
    except ValueError as exc:  # the computer's scheduler options are invalid
        raise InputValidationError(process_label, [("metadata.computer", str(exc))]) from None
    try:
        scheduler.validate_job_options(options)
    except InvalidJobOptionError as exc:
        raise InputValidationError(
            process_label, [(f"metadata.options.{exc.option}", f"{exc.value!r} {exc.reason}")]
        ) from None
