"""The types of what ``profile.toml`` holds, checked when a profile is read.

``profile.toml`` is edited by hand.  A value of the wrong type used to be
turned into something else silently (``user_email = 3`` became ``"3"``) or to
fail far from its cause (``options = "x"`` as an "unexpected ValueError" of
``dict()``).  :func:`check_profile_data` refuses it when the file is read,
with a :class:`~plait.storage.profile.ProfileError` naming the file, the key,
the value and the type it must have, so the CLI prints one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PROFILE_KEY_TYPES", "check_plait_home", "check_profile_data"]

#: the keys of profile.toml and the type each must have (other keys are left alone).
PROFILE_KEY_TYPES: dict[str, type] = {
    "name": str,
    "uuid": str,
    "storage_url": str,
    "storage_url_file": str,
    "broker_url": str,
    "broker_url_file": str,
    "user_email": str,
    "options": dict,
}


def check_profile_data(config: Path, data: Mapping[str, Any]) -> None:
    """Refuse a ``profile.toml`` whose known keys have values of the wrong type.

    Raises:
        ProfileError: naming ``config``, the key, the value and the expected type.
    """
    from plait.storage.profile import ProfileError

    for key, expected in PROFILE_KEY_TYPES.items():
        if key in data and not isinstance(data[key], expected):
            kind = "a table" if expected is dict else "a string"
            raise ProfileError(f"{config}: {key} = {data[key]!r} must be {kind}")


def check_plait_home(home: Path) -> Path:
    """``home`` if it is a folder or does not exist yet (it is then made when needed).

    Raises:
        ProfileError: ``$PLAIT_HOME`` (or ``~/.plait``) names something that is not a folder.
    """
    from plait.storage.profile import ProfileError

    if home.exists() and not home.is_dir():
        raise ProfileError(f"PLAIT_HOME={home} is not a folder: point it at a folder (or unset it)")
    return home
