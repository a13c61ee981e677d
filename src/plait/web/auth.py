"""The API token: one per profile, made on first start, kept in the profile folder with mode 600.

Every request must carry it, as ``Authorization: Bearer <token>`` or, for
what a browser opens by itself (a download link, an ``EventSource`` stream),
as the query parameter ``?token=<token>``.  It is compared in constant time
(:func:`hmac.compare_digest`).  The file ``web-token`` is created owner-only
before the token is written into it, so no other user of the machine can
read it even for an instant; a token file that others can read is refused.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.security import HTTPBearer

from plait.storage.permissions import create_private_file, is_private

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["TOKEN_FILE", "TokenError", "check_token", "load_or_create_token", "token_path"]

#: the token's file name inside the profile folder
TOKEN_FILE = "web-token"

#: documents the scheme in the OpenAPI spec; the check itself is :func:`check_token`
bearer = HTTPBearer(auto_error=False, description="the profile's web token (see `plait web`)")


class TokenError(RuntimeError):
    """The token file cannot be used (readable by others, or empty); the message says what to do."""


def token_path(profile: Profile) -> Path:
    return Path(profile.path) / TOKEN_FILE


def load_or_create_token(profile: Profile) -> str:
    """The profile's token, made (32 random bytes, URL-safe) and stored mode 600 if there is none.

    Raises:
        TokenError: the file is readable by other users, or holds no token.
    """
    path = token_path(profile)
    if create_private_file(path):
        token = secrets.token_urlsafe(32)
        with open(path, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        return token
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not is_private(mode):
        raise TokenError(
            f"{path} can be read by other users (mode {mode:o}): `chmod 600 {path}` or delete it"
        )
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not token:
        raise TokenError(f"{path} holds no token: delete it and start `plait web` again to make a new one")
    return token


def check_token(request: Request, expected: str) -> bool:
    """True when ``request`` carries ``expected`` (header or ``token`` query parameter)."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        given = request.query_params.get("token", "")
    return bool(given) and hmac.compare_digest(given.strip().encode(), expected.encode())
