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

__all__ = ["PreparedJobInputs", "check_job_options"]


class PreparedJobInputs(dict[str, Any]):
    """A calculation job's processed inputs, with the :class:`Computer` its options were checked against.

    :meth:`plait.engine.calcjob.CalcJob.prepare_inputs` returns one, and the job built from it
    runs on that very computer object (``CalcJob.computer``): the options are checked against the
    computer the job gets, not against an earlier read of a row that may have changed since, and a
    launch reads the computer (two queries for ``localhost``) once instead of twice.  Anything
    that copies the inputs into a plain dict loses ``computer``; the job then reads it again.
    """

    computer: Computer | None = None


def computer_of(inputs: Mapping[str, Any]) -> Computer:
    """The computer a calculation job with these processed inputs runs on (a database read).

    The ``code``'s computer for an installed code, else ``metadata.computer`` (default ``localhost``).

    Raises:
        NotExistentError: no such computer.
    """
    code = inputs.get("code")
    if isinstance(code, InstalledCode):
        return code.computer
    return Computer.get(inputs.get("metadata", {}).get("computer"))


def check_job_options(process_label: str, inputs: Mapping[str, Any]) -> Computer:
    """Refuse options the computer's scheduler cannot honour; nothing is stored yet.

    ``inputs`` are the calculation's inputs as processed by its spec.  Returns the computer
    the options were checked against (see :class:`PreparedJobInputs`).

    Raises:
        InputValidationError: one error naming ``metadata.options.<option>``, the
            value and the reason; or naming ``metadata.computer`` when the computer
            does not exist or its scheduler options are invalid.
    """
    from plait.schedulers import InvalidJobOptionError

    options = dict(inputs.get("metadata", {}).get("options", {}))
    try:
        computer = computer_of(inputs)
        scheduler = computer.get_scheduler()
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
    return computer
