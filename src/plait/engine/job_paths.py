"""The names a calculation job turns into paths, checked before anything is stored or uploaded.

A job's file names come from two places, and each is checked where a
refusal is cheapest and clearest:

* its **options** (``input_filename``, ``output_filename``,
  ``scheduler_stdout``, ``scheduler_stderr``, the items of
  ``additional_retrieve_list``) are inputs: :func:`check_option_paths` runs
  at launch, so a bad name is an :class:`~plait.engine.ports.InputValidationError`
  naming ``metadata.options.<name>`` and nothing is stored;
* the **lists its plugin returns** from ``prepare_for_submission``
  (``local_copy_list`` and ``remote_copy_list`` targets, ``remote_symlink_list``
  links, ``retrieve_list`` and ``retrieve_temporary_list`` items, the
  ``stdin``/``stdout``/``stderr`` names of its commands) are only known once
  the job runs: :func:`check_calc_info_paths` runs right after
  ``prepare_for_submission``, before anything is uploaded.  A bad name there is
  a bug of the plugin, not a passing trouble of the computer, so it raises
  :class:`~plait.transports.relative_paths.UnsafePathError` (a ``ValueError``)
  and the job *excepts* with a message naming the calculation and the list,
  instead of pausing for a retry that would fail the same way.

Each name must be relative, without any ``..`` part and without NUL (see
:func:`~plait.transports.relative_paths.check_relative_path`).  The sources
of ``remote_copy_list`` and ``remote_symlink_list`` are absolute paths on the
computer by design and are not checked here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from plait.engine.ports import InputValidationError
from plait.transports.relative_paths import UnsafePathError, check_relative_path

if TYPE_CHECKING:
    from plait.engine.calcjob import CalcInfo

__all__ = ["check_calc_info_paths", "check_option_paths", "check_retrieve_item_paths"]

#: the options whose value is one file name inside the job's folder
FILE_NAME_OPTIONS = ("input_filename", "output_filename", "scheduler_stdout", "scheduler_stderr")


def check_retrieve_item_paths(item: Any, what: str) -> None:
    """Check one retrieve list item: a path or glob, or ``(source glob, target, depth)``.

    The source must name something inside the job's folder; the target may be
    empty (the top of the retrieved folder) but must stay inside it.

    Raises:
        UnsafePathError: naming ``what`` and the part refused.
    """
    if isinstance(item, str):
        check_relative_path(item, what)
    elif isinstance(item, (list, tuple)) and len(item) == 3:
        check_relative_path(item[0], f"{what} source")
        check_relative_path(item[1], f"{what} target", allow_empty=True)


def check_option_paths(process_label: str, inputs: Mapping[str, Any]) -> None:
    """Refuse file-name options that would leave the job's folder (at launch, nothing stored yet).

    Raises:
        InputValidationError: naming ``metadata.options.<name>``, the value and the reason.
    """
    options = inputs.get("metadata", {}).get("options", {})
    errors: list[tuple[str, str]] = []
    for name in FILE_NAME_OPTIONS:
        value = options.get(name)
        if value is not None:
            try:
                check_relative_path(value, "the file name")
            except UnsafePathError as exc:
                errors.append((f"metadata.options.{name}", str(exc)))
    for index, item in enumerate(options.get("additional_retrieve_list") or ()):
        try:
            check_retrieve_item_paths(item, f"item {index}")
        except UnsafePathError as exc:
            errors.append(("metadata.options.additional_retrieve_list", str(exc)))
    if errors:
        raise InputValidationError(process_label, errors)


def _targets(pairs: Iterable[Any], position: int) -> Iterable[Any]:
    for pair in pairs:
        yield pair[position] if isinstance(pair, (list, tuple)) and len(pair) > position else pair


def check_calc_info_paths(calculation: str, calc_info: CalcInfo) -> None:
    """Refuse names from ``prepare_for_submission`` that would leave the job's folder.

    ``calculation`` is the calculation's class name, for the message.

    Raises:
        UnsafePathError: ``"<calculation>.prepare_for_submission: <list> item <i>: ..."``.
    """

    def check(where: str, value: Any, *, allow_empty: bool = False) -> None:
        try:
            check_relative_path(value, where, allow_empty=allow_empty)
        except UnsafePathError as exc:
            raise UnsafePathError(f"{calculation}.prepare_for_submission: {exc}") from None

    for index, target in enumerate(_targets(calc_info.local_copy_list, 2)):
        check(f"local_copy_list item {index} target", target, allow_empty=True)
    for index, target in enumerate(_targets(calc_info.remote_copy_list, 1)):
        check(f"remote_copy_list item {index} target", target)
    for index, target in enumerate(_targets(calc_info.remote_symlink_list, 1)):
        check(f"remote_symlink_list item {index} link", target)
    for name in ("retrieve_list", "retrieve_temporary_list"):
        for index, item in enumerate(getattr(calc_info, name)):
            try:
                check_retrieve_item_paths(item, f"{name} item {index}")
            except UnsafePathError as exc:
                raise UnsafePathError(f"{calculation}.prepare_for_submission: {exc}") from None
    for index, info in enumerate(calc_info.codes_info):
        for field_name in ("stdin_name", "stdout_name", "stderr_name"):
            value = getattr(info, field_name, None)
            if value is not None:
                check(f"codes_info item {index} {field_name}", value)
