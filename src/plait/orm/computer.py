"""Computers: where calculation jobs run, and how each user reaches them.

A :class:`Computer` says *what* the machine is: its host name, the transport
plugin that reaches it (``local``, ``ssh``, ``ssh-blocking``), its scheduler
(``direct``, ``slurm``, ``pbs``), the folder where jobs run, the MPI launcher
and the engine's manners towards it (``safe_interval`` between connections,
``minimum_poll_interval`` between scheduler queries, ``max_queued_jobs``,
retry policy).

Its per-user configuration (:meth:`Computer.configure`) says *how this user*
gets in: user name, key files, port, proxy jump...  Those go to the
transport plugin's constructor as they are.

A ``localhost`` computer (local transport, direct scheduler, jobs under the
profile's ``scratch`` folder) exists in every profile, so the first
calculation needs no set-up.
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
from typing import Any, ClassVar

from plait.orm.errors import NotExistentError

__all__ = ["Computer", "ComputerOptions"]

#: options of a computer and their defaults (None: the transport or scheduler default).
ComputerOptions: dict[str, Any] = {
    "mpirun_command": ["mpirun", "-np", "{tot_num_mpiprocs}"],
    "default_mpiprocs_per_machine": None,
    "default_memory_per_machine_kb": None,
    "safe_interval": None,
    "minimum_poll_interval": 10.0,
    "max_queued_jobs": None,
    "retry_initial_interval": 2.0,
    "retry_max_attempts": 5,
    "max_concurrent_operations": 8,
    "prepend_text": "",
    "append_text": "",
    "scheduler_options": {},
}

#: the longest label, hostname or work folder the database columns hold.
MAX_LABEL_LENGTH = 255

#: the type each option must have (checked at setup, so a wrong one is refused before it is stored).
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "mpirun_command": (list, tuple),
    "default_mpiprocs_per_machine": (int,),
    "default_memory_per_machine_kb": (int,),
    "safe_interval": (int, float),
    "minimum_poll_interval": (int, float),
    "max_queued_jobs": (int,),
    "retry_initial_interval": (int, float),
    "retry_max_attempts": (int,),
    "max_concurrent_operations": (int,),
    "prepend_text": (str,),
    "append_text": (str,),
    "scheduler_options": (dict,),
}
#: the options whose ``None`` means "the plugin's default".
_OPTIONAL_OPTIONS = {
    "default_mpiprocs_per_machine",
    "default_memory_per_machine_kb",
    "safe_interval",
    "max_queued_jobs",
}

_LOCAL_DEFAULTS = {"minimum_poll_interval": 0.02, "safe_interval": 0.0, "retry_initial_interval": 0.5}


def _backend() -> Any:
    from plait.storage import get_backend

    return get_backend()


def _user_email() -> str:
    from plait.storage import get_profile

    return get_profile().user_email


class Computer:
    """A computer.  Create with the constructor then :meth:`store`; find with :meth:`get`."""

    LOCALHOST: ClassVar[str] = "localhost"

    def __init__(
        self,
        label: str,
        *,
        hostname: str = "localhost",
        transport_type: str = "local",
        scheduler_type: str = "direct",
        work_dir: str = "/tmp/plait-{username}",
        description: str = "",
        **options: Any,
    ) -> None:
        unknown = set(options) - set(ComputerOptions)
        if unknown:
            raise ValueError(
                f"unknown computer option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(ComputerOptions))}"
            )
        if not isinstance(label, str) or not label or "@" in label or any(c.isspace() for c in label):
            raise ValueError(f"invalid computer label {label!r}: no spaces, no '@'")
        if len(label) > MAX_LABEL_LENGTH or "\0" in label:
            raise ValueError(
                f"invalid computer label {label[:40]!r}...: at most {MAX_LABEL_LENGTH} characters, no NUL"
            )
        self.pk: int | None = None
        self.uuid = str(_uuid.uuid4())
        self.label = label
        self.hostname = hostname
        self.transport_type = transport_type
        self.scheduler_type = scheduler_type
        self.work_dir = work_dir
        self.description = description
        defaults = dict(ComputerOptions)
        if transport_type == "local":
            defaults.update(_LOCAL_DEFAULTS)
        defaults.update(options)
        self.options = defaults
        self._validate()

    def _validate(self) -> None:
        from plait.schedulers import get_scheduler_class
        from plait.transports import get_transport_class

        try:
            get_transport_class(self.transport_type)
        except (LookupError, ValueError) as exc:
            raise ValueError(f"computer '{self.label}': transport: {exc}") from None
        try:
            get_scheduler_class(self.scheduler_type)
        except (LookupError, ValueError) as exc:
            raise ValueError(f"computer '{self.label}': scheduler: {exc}") from None
        self._validate_fields()
        for name in ("minimum_poll_interval", "retry_initial_interval"):
            value = self.options[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"computer '{self.label}': option {name} must be a number >= 0, got {value!r}"
                )
        for name in ("max_queued_jobs", "default_mpiprocs_per_machine"):
            value = self.options[name]
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"computer '{self.label}': option {name} must be a positive integer, got {value!r}"
                )
        if not isinstance(self.options["retry_max_attempts"], int) or self.options["retry_max_attempts"] < 1:
            raise ValueError(f"computer '{self.label}': option retry_max_attempts must be >= 1")
        if "{" in self.work_dir.replace("{username}", ""):
            raise ValueError(f"computer '{self.label}': work_dir may only use the placeholder {{username}}")
        import string

        allowed = {"tot_num_mpiprocs", "num_machines", "num_mpiprocs_per_machine", "num_cores_per_mpiproc"}
        for part in self.options.get("mpirun_command") or []:
            names = {name for _, name, _, _ in string.Formatter().parse(str(part)) if name}
            if names - allowed:
                raise ValueError(
                    f"computer '{self.label}': mpirun_command uses {', '.join(sorted(names - allowed))}; "
                    f"placeholders are {', '.join(sorted(allowed))}"
                )

    def _validate_fields(self) -> None:
        """Types of the fields and options, the work folder, and the scheduler's own options.

        Raises:
            ValueError: naming the computer, the field or option and the value.
        """
        where = f"computer '{self.label}'"
        for name in ("hostname", "work_dir", "description", "transport_type", "scheduler_type"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{where}: {name} must be a string, got {value!r}")
            too_long = len(value) > MAX_LABEL_LENGTH or any(c in value for c in "\n\r\0")
            if name != "description" and too_long:
                raise ValueError(
                    f"{where}: {name}={value[:60]!r} must be one line of at most {MAX_LABEL_LENGTH} chars"
                )
        if not self.work_dir.startswith("/"):
            raise ValueError(
                f"{where}: work_dir={self.work_dir!r} must be an absolute path (it is used on the computer)"
            )
        for name, kinds in _OPTION_TYPES.items():
            value = self.options.get(name)
            if value is None and name in _OPTIONAL_OPTIONS:
                continue
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                names = " or ".join(kind.__name__ for kind in kinds)
                raise ValueError(f"{where}: option {name} must be of type {names}, got {value!r}")
        mpirun = self.options["mpirun_command"]
        if not all(isinstance(part, str) for part in mpirun):
            raise ValueError(f"{where}: option mpirun_command must be a list of strings, got {mpirun!r}")
        from plait.schedulers import get_scheduler_class

        try:
            get_scheduler_class(self.scheduler_type)(**self.options["scheduler_options"])
        except (LookupError, ImportError):
            pass  # reported by _validate with the plugin's name
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: scheduler_options: {exc}") from None

    def __repr__(self) -> str:
        return f"<Computer {self.label} ({self.transport_type}, {self.scheduler_type}) pk={self.pk}>"

    # -- storage -------------------------------------------------------------------------
    def store(self) -> Computer:
        """Store the computer.  Raises ValueError if the label is taken.

        The label check and the INSERT are one atomic step
        (:meth:`~plait.storage.backend.StorageBackend.insert_computer_if_absent`):
        another process storing the same label at the same moment makes this
        one raise ValueError too, never a database error.
        """
        if self.pk is not None:
            return self
        backend = _backend()
        if backend.get_computer(label=self.label) is not None:
            raise ValueError(f"a computer labelled '{self.label}' exists already")
        pk, inserted = backend.insert_computer_if_absent(
            {
                "uuid": self.uuid,
                "label": self.label,
                "hostname": self.hostname,
                "description": self.description,
                "transport_type": self.transport_type,
                "scheduler_type": self.scheduler_type,
                "work_dir": self.work_dir,
                "options": self.options,
                "ctime": _dt.datetime.now(_dt.UTC),
            }
        )
        if not inserted:
            raise ValueError(f"a computer labelled '{self.label}' exists already")
        self.pk = pk
        return self

    def set_options(self, **options: Any) -> None:
        """Change options of a stored computer (validated as at creation)."""
        unknown = set(options) - set(ComputerOptions)
        if unknown:
            raise ValueError(f"unknown computer option(s) {', '.join(sorted(unknown))}")
        previous = dict(self.options)
        self.options.update(options)
        try:
            self._validate()
        except ValueError:
            self.options = previous
            raise
        if self.pk is not None:
            _backend().update_computer(self.pk, options=self.options)

    @classmethod
    def _from_row(cls, row: dict[str, Any]) -> Computer:
        computer = cls.__new__(cls)
        computer.pk = row["id"]
        computer.uuid = row["uuid"]
        computer.label = row["label"]
        computer.hostname = row["hostname"]
        computer.transport_type = row["transport_type"]
        computer.scheduler_type = row["scheduler_type"]
        computer.work_dir = row["work_dir"]
        computer.description = row["description"]
        computer.options = {**ComputerOptions, **(row["options"] or {})}
        return computer

    @classmethod
    def get(cls, label: str | None = None, *, pk: int | None = None) -> Computer:
        """The stored computer with this label (or pk).  Raises NotExistentError."""
        backend = _backend()
        if label == cls.LOCALHOST or (label is None and pk is None):
            ensure_localhost()
            label = cls.LOCALHOST
        row = backend.get_computer(pk=pk) if pk is not None else backend.get_computer(label=label)
        if row is None:
            known = ", ".join(c["label"] for c in backend.list_computers()) or "none"
            what = f"pk {pk}" if pk is not None else f"label '{label}'"
            raise NotExistentError(f"no computer with {what} (known: {known})")
        return cls._from_row(row)

    @classmethod
    def list(cls) -> list[Computer]:
        ensure_localhost()
        return [cls._from_row(row) for row in _backend().list_computers()]

    # -- per-user configuration --------------------------------------------------------
    def configure(self, **params: Any) -> None:
        """Record how the current user reaches this computer (given to the transport plugin).

        Raises:
            ValueError: a parameter the transport plugin does not accept.
        """
        import inspect

        from plait.transports import get_transport_class

        if self.pk is None:
            raise ValueError("store the computer before configuring it")
        accepted = inspect.signature(get_transport_class(self.transport_type).__init__).parameters
        unknown = [name for name in params if name not in accepted or name in ("self", "hostname")]
        if unknown:
            names = sorted(p for p in accepted if p not in ("self", "hostname"))
            raise ValueError(
                f"the {self.transport_type} transport does not take {', '.join(unknown)} (it takes: "
                f"{', '.join(names)})"
            )
        _backend().set_computer_config(self.pk, _user_email(), params)
        self._config = dict(params)

    def get_config(self) -> dict[str, Any]:
        """The current user's transport parameters ({} if not configured); read once per object."""
        if self.pk is None:
            return {}
        cached = getattr(self, "_config", None)
        if cached is None:
            row = _backend().get_computer_config(self.pk, _user_email())
            cached = self._config = dict(row["params"]) if row else {}
        return dict(cached)

    @property
    def is_configured(self) -> bool:
        """True for the local transport, or once the user configured it (even with no parameters)."""
        if self.transport_type == "local":
            return True
        return self.pk is not None and _backend().get_computer_config(self.pk, _user_email()) is not None

    def set(self, **fields: Any) -> None:
        """Change ``hostname``, ``work_dir`` or ``description`` of a computer (validated, stored at once).

        The transport and scheduler plugins are not changeable: calculations
        already recorded on this computer ran with them.
        """
        allowed = {"hostname", "work_dir", "description"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(
                f"cannot change {', '.join(sorted(unknown))} of a computer "
                f"(changeable: {', '.join(sorted(allowed))})"
            )
        previous = {name: getattr(self, name) for name in fields}
        for name, value in fields.items():
            setattr(self, name, str(value))
        try:
            self._validate()
        except ValueError:
            for name, value in previous.items():
                setattr(self, name, value)
            raise
        if self.pk is not None:
            _backend().update_computer(self.pk, **fields)

    # -- what the engine needs ------------------------------------------------------------
    def transport_class(self) -> Any:
        """The transport plugin class (looked up once per object)."""
        cls = self.__dict__.get("_transport_class")
        if cls is None:
            from plait.transports import get_transport_class

            cls = self.__dict__["_transport_class"] = get_transport_class(self.transport_type)
        return cls

    def get_transport(self) -> Any:
        """A new, unopened transport for this computer and user."""
        return self.transport_class()(hostname=self.hostname, **self.get_config())

    def get_scheduler(self) -> Any:
        """The scheduler plugin instance (made once per object; plugins keep no per-job state)."""
        scheduler = self.__dict__.get("_scheduler")
        if scheduler is None:
            from plait.schedulers import get_scheduler_class

            options = self.options.get("scheduler_options") or {}
            scheduler = self.__dict__["_scheduler"] = get_scheduler_class(self.scheduler_type)(**options)
        return scheduler

    @property
    def pool_key(self) -> tuple[str, str, str]:
        """What the transport pool shares a connection by: (plugin, host, user)."""
        return (self.transport_type, self.hostname, str(self.get_config().get("username") or ""))

    def safe_interval(self) -> float:
        value = self.options.get("safe_interval")
        if value is None:
            value = self.transport_class().default_safe_interval
        return float(value)


def ensure_localhost() -> None:
    """Create the ``localhost`` computer of the current profile if it does not exist yet."""
    backend = _backend()
    if backend.get_computer(label=Computer.LOCALHOST) is not None:
        return
    from plait.storage import get_profile

    scratch = get_profile().path / "scratch"
    computer = Computer(
        Computer.LOCALHOST,
        hostname="localhost",
        transport_type="local",
        scheduler_type="direct",
        work_dir=str(scratch),
        description="this machine: local transport, direct scheduler",
    )
    try:
        computer.store()
    except ValueError:  # created by another process meanwhile: Computer.get reads that row
        pass
