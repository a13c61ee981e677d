"""Profiles: a folder holding one plait installation's configuration, database and files.

Layout under ``$PLAIT_HOME`` (default ``~/.plait``)::

    config.toml                  # default_profile = "default"
    profiles/<name>/profile.toml # storage URL, broker URL, options
    profiles/<name>/database.sqlite   (SQLite profiles)
    profiles/<name>/repository/       (content-addressed node files)
    profiles/<name>/daemon/           (daemon pid file, logs)

The default profile is created on first use with SQLite and the database
broker, so plait works with no set-up step and no server.  A profile on
PostgreSQL is created with ``plait profile setup NAME --db postgresql://...``.

The environment variable ``PLAIT_PROFILE`` selects a profile for one
process, overriding the configured default.

Other local users are kept out (see docs/security.md): ``$PLAIT_HOME``,
``profiles/`` and each profile folder are mode 700 (an existing folder of
this user with looser modes is tightened; one of another user is refused),
``profile.toml``, ``config.toml`` and the SQLite file are mode 600.  A
``profile.toml`` that holds a password and is readable by group or others is
refused (the password may already be known: change it, then ``chmod 600``).
Passwords can stay out of ``profile.toml`` altogether:

* ``PLAIT_DB_PASSWORD`` (``PLAIT_BROKER_PASSWORD``) is put into the storage
  (broker) URL when that URL has a user but no password;
* ``storage_url_file = "path"`` (``broker_url_file``) in ``profile.toml``
  names a file, mode 600, whose content is the URL.

Every profile has a ``uuid``, written to ``profile.toml`` when it is made (or
on first use, for a profile made by an older plait): it names the profile's
RabbitMQ exchanges, so two installations with the same profile name on one
virtual host never ring each other's bells.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tomllib
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from plait.storage.permissions import (
    FILE_MODE,
    InsecurePathError,
    create_private_file,
    is_private,
    owner_only,
    private_file,
    private_folder,
)

__all__ = [
    "Profile",
    "ProfileError",
    "create_profile",
    "get_plait_home",
    "list_profiles",
    "load_profile_config",
    "set_default_profile",
    "set_profile_option",
]

DEFAULT_PROFILE_NAME = "default"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(Exception):
    """A profile is missing, malformed, or cannot be created."""


def get_plait_home() -> Path:
    """The folder holding every profile: ``$PLAIT_HOME`` or ``~/.plait``."""
    from plait.storage.profile_checks import check_plait_home

    home = os.environ.get("PLAIT_HOME")
    return check_plait_home(Path(home).expanduser().resolve() if home else Path.home() / ".plait")


def _private_folder(path: Path) -> Path:
    """``path`` made (or checked) mode 700 and this user's, as a ProfileError when it cannot be."""
    try:
        return private_folder(path, tighten=True)
    except (InsecurePathError, NotADirectoryError) as exc:
        raise ProfileError(str(exc)) from None
    except OSError as exc:
        raise ProfileError(f"cannot make the folder {path}: {exc.strerror or exc}") from None


@dataclass
class Profile:
    """One profile: where its database, broker and files are.

    Attributes:
        name: the profile's name.
        path: its folder.
        storage_url: an SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).
        broker_url: ``"database"`` (the default, no server) or ``amqp://user:pass@host:port/vhost``.
        user_email: who is recorded as the user of computers configured in this profile.
        options: free-form settings (``caching``, ``daemon.workers``, ...).
        uuid: the profile's unique id (names its RabbitMQ exchanges).
        storage_url_file: the file ``storage_url`` was read from, if profile.toml names one.
        broker_url_file: the file ``broker_url`` was read from, if profile.toml names one.

    ``storage_url`` and ``broker_url`` are the URLs plait connects to, with a
    password from the environment or a secrets file already filled in: print
    them only through a function that hides the password.
    """

    name: str
    path: Path
    storage_url: str
    broker_url: str = "database"
    user_email: str = "user@localhost"
    options: dict[str, Any] = field(default_factory=dict)
    uuid: str = ""
    storage_url_file: str | None = None
    broker_url_file: str | None = None

    @property
    def repository_path(self) -> Path:
        return self.path / "repository"

    @property
    def daemon_path(self) -> Path:
        return self.path / "daemon"

    @property
    def storage_backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "postgresql" if self.storage_url.startswith("postgresql") else "sqlite"

    def to_toml(self) -> dict[str, Any]:
        """The content of ``profile.toml`` (a URL read from a secrets file is named by its file)."""
        data: dict[str, Any] = {"name": self.name, "uuid": self.uuid}
        if self.storage_url_file:
            data["storage_url_file"] = self.storage_url_file
        else:
            data["storage_url"] = self.storage_url
        if self.broker_url_file:
            data["broker_url_file"] = self.broker_url_file
        else:
            data["broker_url"] = self.broker_url
        data["user_email"] = self.user_email
        data["options"] = self.options
        return data


def _config_file() -> Path:
    return get_plait_home() / "config.toml"


def _profiles_dir() -> Path:
    return get_plait_home() / "profiles"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path} is not valid TOML: {exc}") from exc


def _write_private(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically by ``content``, mode 600 whatever the umask."""
    _private_folder(path.parent)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, content)
    finally:
        os.close(fd)
    tmp.replace(path)


def _write_toml(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    _write_private(path, tomli_w.dumps(data).encode())


def url_password(url: str) -> str | None:
    """The password in a ``scheme://user:password@host/...`` URL, if it has one."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def hide_password(url: str) -> str:
    """``scheme://user:***@host/...``: ``url`` safe to print."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    netloc = f"{user.split(':', 1)[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put in (after its user name) when it has a user and no password yet."""
    parts = urlsplit(url)
    if parts.password is not None or not parts.username:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def list_profiles() -> list[str]:
    """Names of every profile under ``$PLAIT_HOME``, sorted."""
    folder = _profiles_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "profile.toml").is_file())


def default_profile_name() -> str:
    """``$PLAIT_PROFILE``, else the configured default, else ``"default"``."""
    env = os.environ.get("PLAIT_PROFILE")
    if env:
        return env
    return str(_read_toml(_config_file()).get("default_profile", DEFAULT_PROFILE_NAME))


def set_default_profile(name: str) -> None:
    """Make ``name`` the default profile.  Raises ProfileError if it does not exist."""
    if name not in list_profiles():
        raise ProfileError(f"profile '{name}' does not exist (known: {', '.join(list_profiles()) or 'none'})")
    config = _read_toml(_config_file())
    config["default_profile"] = name
    _write_toml(_config_file(), config)


def _normalise_storage_url(url: str) -> str:
    """The URL plait stores: ``postgresql+psycopg://...`` naming a database, or ``sqlite:////absolute``.

    A relative SQLite path (``sqlite:///data/db.sqlite``) is made absolute from the current
    folder, so the profile works from any folder.

    Raises:
        ProfileError: another scheme, a PostgreSQL URL without a database name (libpq would pick
            a default database and plait would create its tables there), an SQLite URL without a path.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgresql+psycopg://"):
        try:
            database = urlsplit(url).path.lstrip("/")
        except ValueError as exc:
            raise ProfileError(f"invalid database URL '{hide_password(url)}': {exc}") from None
        if not database:
            raise ProfileError(
                f"the database URL '{hide_password(url)}' names no database: "
                "add it, as in postgresql://user@host:5432/dbname"
            )
        return url
    if url.startswith("sqlite:///"):
        path, mark, query = url[len("sqlite:///") :].partition("?")
        if not path or path == ":memory:":
            raise ProfileError(f"the database URL '{url}' names no file: use sqlite:////absolute/path")
        return f"sqlite:///{Path(path).expanduser().absolute()}{mark}{query}"
    raise ProfileError(
        f"unsupported database URL '{url}': use postgresql://user@host:port/dbname or sqlite:///path"
    )


def _check_broker_url(url: str) -> str:
    """``database``, or a RabbitMQ URL (``rabbitmq://`` is accepted and stored as ``amqp://``)."""
    if url.startswith("rabbitmq://"):
        url = "amqp://" + url[len("rabbitmq://") :]
    elif url.startswith("rabbitmqs://"):
        url = "amqps://" + url[len("rabbitmqs://") :]
    if url == "database" or url.startswith(("amqp://", "amqps://")):
        return url
    raise ProfileError(
        f"unsupported broker '{url}': use 'database' or rabbitmq://user:password@host:port/vhost (or amqp://)"
    )


def create_profile(
    name: str,
    *,
    storage_url: str | None = None,
    broker_url: str = "database",
    user_email: str = "user@localhost",
    make_default: bool | None = None,
    options: dict[str, Any] | None = None,
) -> Profile:
    """Create the profile folder (mode 700) and its ``profile.toml`` (mode 600).

    The database schema is created by the storage backend when the profile is
    first opened (see :mod:`plait.storage.backend`).  The new profile gets a
    fresh ``uuid``.

    Args:
        storage_url: ``None`` for an SQLite file in the profile folder, or a
            PostgreSQL URL (``postgresql://user@host:5432/dbname``); a relative
            ``sqlite:///path`` is made absolute from the current folder.
        make_default: make it the default profile; ``None`` means "if there is no default yet".

    Raises:
        ProfileError: bad name, unsupported URL (a PostgreSQL URL without a database name
            too), the profile exists already, or a folder of ``$PLAIT_HOME`` is another user's.
    """
    if not _NAME_RE.match(name):
        raise ProfileError(
            f"invalid profile name '{name}': use letters, digits, '_', '.', '-' (at most 64 characters)"
        )
    folder = _profiles_dir() / name
    if (folder / "profile.toml").exists():
        raise ProfileError(f"profile '{name}' already exists in {folder}")
    url = _normalise_storage_url(storage_url) if storage_url else f"sqlite:///{folder / 'database.sqlite'}"
    profile = Profile(
        name=name,
        path=folder,
        storage_url=url,
        broker_url=_check_broker_url(broker_url),
        user_email=user_email,
        options=dict(options or {}),
        uuid=str(uuid_module.uuid4()),
    )
    _private_folder(get_plait_home())
    _private_folder(folder)
    _private_folder(profile.repository_path)
    _write_toml(folder / "profile.toml", profile.to_toml())
    _secure_sqlite_file(profile.storage_url)
    config = _read_toml(_config_file())
    if make_default or (make_default is None and "default_profile" not in config):
        config["default_profile"] = name
        _write_toml(_config_file(), config)
    return profile


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the folder itself) for one read-then-write."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _profile_uuid(config: Path, data: dict[str, Any]) -> str:
    """The profile's uuid; one is made and written into ``config`` if it has none (older profiles).

    The line ``uuid = "..."`` is put before everything else, so the rest of the file (comments
    included) is kept as it is.  If the file cannot be written, the uuid is derived from the
    profile folder (stable for every process of this installation).
    """
    found = data.get("uuid")
    if isinstance(found, str) and found:
        return found
    try:
        with _folder_lock(config.parent):
            current = _read_toml(config)
            if isinstance(current.get("uuid"), str) and current["uuid"]:
                return str(current["uuid"])
            made = str(uuid_module.uuid4())
            _write_private(config, f'uuid = "{made}"\n'.encode() + config.read_bytes())
            return made
    except OSError:
        return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, f"plait-profile:{config.parent.resolve()}"))


def _check_config_file(config: Path, data: dict[str, Any]) -> None:
    """Refuse a ``profile.toml`` that holds a password and is open to others; tighten one that holds none.

    A file with a password is refused rather than tightened: someone may already have read it,
    so the password should be changed before the file is closed again.
    """
    info = os.lstat(config)
    if info.st_uid != os.getuid():
        raise ProfileError(
            f"{config} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
            "plait uses only a profile file of its own user"
        )
    if is_private(info.st_mode):
        return
    secret = any(
        isinstance(data.get(key), str) and url_password(data[key]) for key in ("storage_url", "broker_url")
    )
    if secret:
        raise ProfileError(
            f"{config} holds a password and group or others can read it (mode {info.st_mode & 0o777:o}): "
            f"change that password, then run `chmod 600 {config}` "
            "(or keep the password out of the file: PLAIT_DB_PASSWORD, storage_url_file)"
        )
    private_file(config)


def _read_url_file(folder: Path, value: Any, key: str) -> tuple[str, str]:
    """The URL held by the secrets file ``value`` names (relative to the profile folder), and its path.

    Raises:
        ProfileError: not a string, no such file, another user's file, or one group/others can read.
    """
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{folder / 'profile.toml'}: {key} must be the path of a file")
    path = (folder / Path(value).expanduser()).absolute()
    try:
        owner_only(path)
        url = path.read_text().strip()
    except FileNotFoundError:
        raise ProfileError(f"{folder / 'profile.toml'}: {key} names {path}, which does not exist") from None
    except InsecurePathError as exc:
        raise ProfileError(f"the {key} of profile '{folder.name}': {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read {path} ({key}): {exc}") from None
    if not url:
        raise ProfileError(f"{path} ({key}) is empty: it should hold the URL")
    return url, value


def _secure_sqlite_file(url: str) -> None:
    """Create an SQLite database file mode 600 before SQLite does, or set an existing one (and its
    ``-wal``, ``-shm`` and ``-journal``) to 600.  SQLite gives the files it adds the database's mode."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///") :].partition("?")[0])
    if not path.parent.is_dir():
        return
    with contextlib.suppress(OSError):
        if create_private_file(path):
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            private_file(Path(f"{path}{suffix}"))


def load_profile_config(name: str | None = None, *, create_default: bool = True) -> Profile:
    """Read a profile's configuration.

    With ``name=None`` the default profile is used; if that is the built-in
    ``default`` profile and it does not exist yet, it is created (SQLite,
    database broker) when ``create_default`` is true.

    Before anything is read the folders are checked (see the module docstring):
    this user's and mode 700 (tightened if looser), ``profile.toml`` mode 600
    (refused if looser and holding a password).  The URLs returned have the
    passwords of ``PLAIT_DB_PASSWORD``/``PLAIT_BROKER_PASSWORD`` or of the
    ``*_url_file`` secrets files filled in.

    Raises:
        ProfileError: the profile does not exist, its file is malformed or unsafe, or a
            folder of ``$PLAIT_HOME`` is another user's.
    """
    wanted = name or default_profile_name()
    folder = _profiles_dir() / wanted
    config = folder / "profile.toml"
    if config.is_file():
        _private_folder(get_plait_home())
        _private_folder(_profiles_dir())
        _private_folder(folder)
    data = _read_toml(config)
    if not data:
        if wanted == DEFAULT_PROFILE_NAME and create_default and name is None:
            return create_profile(DEFAULT_PROFILE_NAME)
        known = ", ".join(list_profiles()) or "none"
        raise ProfileError(f"profile '{wanted}' does not exist (known profiles: {known})")
    from plait.storage.profile_checks import check_profile_data

    check_profile_data(config, data)
    _check_config_file(config, data)
    storage_file = broker_file = None
    if "storage_url_file" in data:
        storage_url, storage_file = _read_url_file(folder, data["storage_url_file"], "storage_url_file")
        storage_url = _normalise_storage_url(storage_url)
    elif "storage_url" in data:
        storage_url = str(data["storage_url"])
    else:
        raise ProfileError(f"{config} lacks the key 'storage_url' (or 'storage_url_file')")
    if "broker_url_file" in data:
        broker_url, broker_file = _read_url_file(folder, data["broker_url_file"], "broker_url_file")
        broker_url = _check_broker_url(broker_url)
    else:
        broker_url = str(data.get("broker_url", "database"))
    db_password = os.environ.get("PLAIT_DB_PASSWORD")
    if db_password and storage_url.startswith("postgresql"):
        storage_url = with_password(storage_url, db_password)
    broker_password = os.environ.get("PLAIT_BROKER_PASSWORD")
    if broker_password and broker_url.startswith("amqp"):
        broker_url = with_password(broker_url, broker_password)
    _secure_sqlite_file(storage_url)
    return Profile(
        name=str(data.get("name", wanted)),
        path=folder,
        storage_url=storage_url,
        broker_url=broker_url,
        user_email=str(data.get("user_email", "user@localhost")),
        options=dict(data.get("options", {})),
        uuid=_profile_uuid(config, data),
        storage_url_file=storage_file,
        broker_url_file=broker_file,
    )


def set_profile_option(name: str | None, key: str, value: Any) -> Profile:
    """Set option ``key`` of a profile in its ``profile.toml`` and return the profile read again.

    A dotted key names a table: ``caching.enabled_for`` is ``enabled_for`` in
    ``[options.caching]``.  ``value=None`` removes the option.  Everything else
    in the file is kept as it was; the write holds the profile folder's lock and
    replaces the file atomically (mode 600).  The caller checks the value (the
    storage layer does not know what each option means).

    Raises:
        ProfileError: the profile does not exist, its file is malformed, or ``key`` is empty or
            crosses an option that is not a table.
    """
    parts = key.split(".")
    if not all(parts):
        raise ProfileError(f"invalid option name '{key}': use names like 'caching.default_enabled'")
    profile = load_profile_config(name, create_default=False)
    config = profile.path / "profile.toml"
    with _folder_lock(profile.path):
        data = _read_toml(config)
        table = data.setdefault("options", {})
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ProfileError(f"option '{key}': '{part}' is a value in {config}, not a table")
        if value is None:
            table.pop(parts[-1], None)
        else:
            table[parts[-1]] = value
        _write_toml(config, data)
    return load_profile_config(profile.name, create_default=False)
