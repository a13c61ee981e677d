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
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Profile",
    "ProfileError",
    "create_profile",
    "get_plait_home",
    "list_profiles",
    "load_profile_config",
    "set_default_profile",
]

DEFAULT_PROFILE_NAME = "default"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(Exception):
    """A profile is missing, malformed, or cannot be created."""


def get_plait_home() -> Path:
    """The folder holding every profile: ``$PLAIT_HOME`` or ``~/.plait``."""
    home = os.environ.get("PLAIT_HOME")
    return Path(home).expanduser().resolve() if home else Path.home() / ".plait"


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
    """

    name: str
    path: Path
    storage_url: str
    broker_url: str = "database"
    user_email: str = "user@localhost"
    options: dict[str, Any] = field(default_factory=dict)

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
        return {
            "name": self.name,
            "storage_url": self.storage_url,
            "broker_url": self.broker_url,
            "user_email": self.user_email,
            "options": self.options,
        }


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


def _write_toml(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(tomli_w.dumps(data).encode())
    tmp.replace(path)


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
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not (url.startswith("postgresql+psycopg://") or url.startswith("sqlite:///")):
        raise ProfileError(
            f"unsupported database URL '{url}': use postgresql://user@host:port/dbname or sqlite:///path"
        )
    return url


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
    """Create the profile folder and its ``profile.toml``.

    The database schema is created by the storage backend when the profile is
    first opened (see :mod:`plait.storage.backend`).

    Args:
        storage_url: ``None`` for an SQLite file in the profile folder, or a
            PostgreSQL URL (``postgresql://user@host:5432/dbname``).
        make_default: make it the default profile; ``None`` means "if there is no default yet".

    Raises:
        ProfileError: bad name, unsupported URL, or the profile exists already.
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
    )
    folder.mkdir(parents=True, exist_ok=True)
    profile.repository_path.mkdir(exist_ok=True)
    _write_toml(folder / "profile.toml", profile.to_toml())
    config = _read_toml(_config_file())
    if make_default or (make_default is None and "default_profile" not in config):
        config["default_profile"] = name
        _write_toml(_config_file(), config)
    return profile


def load_profile_config(name: str | None = None, *, create_default: bool = True) -> Profile:
    """Read a profile's configuration.

    With ``name=None`` the default profile is used; if that is the built-in
    ``default`` profile and it does not exist yet, it is created (SQLite,
    database broker) when ``create_default`` is true.

    Raises:
        ProfileError: the profile does not exist or its file is malformed.
    """
    wanted = name or default_profile_name()
    folder = _profiles_dir() / wanted
    data = _read_toml(folder / "profile.toml")
    if not data:
        if wanted == DEFAULT_PROFILE_NAME and create_default and name is None:
            return create_profile(DEFAULT_PROFILE_NAME)
        known = ", ".join(list_profiles()) or "none"
        raise ProfileError(f"profile '{wanted}' does not exist (known profiles: {known})")
    try:
        return Profile(
            name=str(data.get("name", wanted)),
            path=folder,
            storage_url=str(data["storage_url"]),
            broker_url=str(data.get("broker_url", "database")),
            user_email=str(data.get("user_email", "user@localhost")),
            options=dict(data.get("options", {})),
        )
    except KeyError as exc:
        raise ProfileError(f"{folder / 'profile.toml'} lacks the key {exc}") from exc
