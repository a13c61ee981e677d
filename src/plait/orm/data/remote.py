"""``RemoteData``: a folder that stays on a computer (a calculation's working directory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.orm.errors import StoringNotAllowed
from plait.orm.node import Data

if TYPE_CHECKING:
    from plait.orm.computer import Computer

__all__ = ["RemoteData"]


class RemoteData(Data):
    """A path on a computer.  Its content is not copied into plait; it may be cleaned later."""

    node_type = "data.core.remote"
    #: the extra set to True once the folder was removed from its computer (as aiida-core's ``cleaned``)
    KEY_EXTRA_CLEANED = "cleaned"

    def __init__(
        self, *, remote_path: str | None = None, computer: Computer | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if remote_path is not None:
            self.set_attribute("remote_path", str(remote_path))
        if computer is not None:
            self.computer = computer

    @property
    def remote_path(self) -> str:
        return self.get_attribute("remote_path", "")

    def get_remote_path(self) -> str:
        return self.remote_path

    @property
    def is_cleaned(self) -> bool:
        """True once the folder was removed from its computer (``plait calcjob cleanworkdir``).

        The node itself stays (it is provenance, and stored nodes are immutable);
        the fact is recorded in the extra :attr:`KEY_EXTRA_CLEANED`.
        """
        return bool(self.get_extra(self.KEY_EXTRA_CLEANED, False))

    @property
    def computer(self) -> Computer | None:
        """The :class:`~plait.orm.computer.Computer` the folder lives on."""
        from plait.orm.computer import Computer

        return Computer.get(pk=self._computer_id) if self._computer_id is not None else None

    @computer.setter
    def computer(self, computer: Computer) -> None:
        self._check_mutable("computer")
        if computer.pk is None:
            raise StoringNotAllowed("store the computer before attaching it to a node")
        self._computer_id = computer.pk
        self.set_attribute("computer", computer.label)

    def _validate_before_store(self) -> None:
        if not self.remote_path or self._computer_id is None:
            raise StoringNotAllowed("RemoteData needs a remote_path and a computer")
