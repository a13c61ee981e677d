"""Alembic migrations of the plait schema.

plait runs them programmatically (no ``alembic.ini`` needed): a fresh
database is brought to the head revision when its profile is first opened,
and ``plait storage migrate`` upgrades an older one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at these migrations, bound to ``connection`` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database reachable through ``connection`` to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(connection), revision)
