"""Groups of nodes and comments on nodes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("type_string", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("ctime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_email", sa.String(length=255), nullable=False),
        sa.Column("extras", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_groups_uuid")),
        sa.UniqueConstraint("label", name=op.f("uq_groups_label")),
    )
    op.create_index(op.f("ix_groups_type_string"), "groups", ["type_string"], unique=False)
    op.create_table(
        "group_nodes",
        sa.Column("group_id", PK, nullable=False),
        sa.Column("node_id", PK, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_group_nodes_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_group_nodes_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "node_id", name=op.f("pk_group_nodes")),
    )
    op.create_index(op.f("ix_group_nodes_node_id"), "group_nodes", ["node_id"], unique=False)
    op.create_table(
        "comments",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("node_id", PK, nullable=False),
        sa.Column("ctime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mtime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_email", sa.String(length=255), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_comments_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
        sa.UniqueConstraint("uuid", name=op.f("uq_comments_uuid")),
    )
    op.create_index(op.f("ix_comments_node_id"), "comments", ["node_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_comments_node_id"), table_name="comments")
    op.drop_table("comments")
    op.drop_index(op.f("ix_group_nodes_node_id"), table_name="group_nodes")
    op.drop_table("group_nodes")
    op.drop_index(op.f("ix_groups_type_string"), table_name="groups")
    op.drop_table("groups")
