"""Parked processes wait in the database (process_waits); broker messages get a recipient.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "process_waits",
        sa.Column("parent_id", PK, nullable=False),
        sa.Column("child_id", PK, nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["nodes.id"], name=op.f("fk_process_waits_parent_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["child_id"], ["nodes.id"], name=op.f("fk_process_waits_child_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_process_waits")),
    )
    op.create_index(op.f("ix_process_waits_child_id"), "process_waits", ["child_id"], unique=False)
    with op.batch_alter_table("broker_messages") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=255), nullable=True))
        batch.create_index(batch.f("ix_broker_messages_recipient"), ["recipient"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("broker_messages") as batch:
        batch.drop_index(batch.f("ix_broker_messages_recipient"))
        batch.drop_column("recipient")
    op.drop_index(op.f("ix_process_waits_child_id"), table_name="process_waits")
    op.drop_table("process_waits")
