"""The storage layer: profiles, the database (SQLite or PostgreSQL) and the file repository.

Importing this package is cheap: SQLAlchemy is imported only when a
profile's storage is first opened (:func:`get_backend`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from plait.storage.profile import (
    Profile,
    ProfileError,
    create_profile,
    get_plait_home,
    list_profiles,
    load_profile_config,
    set_default_profile,
)

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = [
    "Profile",
    "ProfileError",
    "create_profile",
    "get_backend",
    "get_plait_home",
    "get_profile",
    "list_profiles",
    "load_profile",
    "reset",
    "set_default_profile",
]

_lock = threading.RLock()
_profile: Profile | None = None
_backend: StorageBackend | None = None


def load_profile(name: str | None = None) -> Profile:
    """Make ``name`` (default: the configured default profile) the profile of this interpreter.

    Switching profiles closes the previous profile's storage.  The default
    profile is created on first use (SQLite, database broker).
    """
    global _profile, _backend
    with _lock:
        profile = load_profile_config(name)
        if _profile is not None and _profile.name == profile.name and _profile.path == profile.path:
            return _profile
        if _backend is not None:
            _backend.close()
        _profile, _backend = profile, None
        return profile


def get_profile() -> Profile:
    """The current profile, loading the default one if none is loaded yet."""
    with _lock:
        return _profile if _profile is not None else load_profile()


def get_backend() -> StorageBackend:
    """The storage of the current profile, opened (and its schema created) on first use."""
    global _backend
    backend = _backend
    if backend is not None:
        return backend
    with _lock:
        if _backend is None:
            from plait.storage.backend import StorageBackend

            _backend = StorageBackend(get_profile())
        return _backend


def reset() -> None:
    """Forget the current profile and close its storage (tests use this between profiles)."""
    global _profile, _backend
    with _lock:
        if _backend is not None:
            _backend.close()
        _profile, _backend = None, None
