"""Distributed runs: each host of a run is taken (a unique row) by the worker that runs
it, before anything runs on it; a batch delivered again finds it taken and never runs it
twice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept if present, as 0003's tables: a store whose version row was dropped (to make
    # it look older) is upgraded again from an earlier revision.
    if "run_host_claims" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "run_host_claims",
            sa.Column("run_id", sa.String(64), primary_key=True),
            sa.Column("host", sa.String(255), primary_key=True),
            sa.Column("owner", sa.String(300), nullable=False),
            sa.Column("claimed_at", sa.String(40), nullable=False),
            sa.Column("alive_at", sa.String(40), nullable=False),
        )


def downgrade() -> None:
    # Refused like every evidence revision: a store is never downgraded.
    raise CommandError("evidence is never downgraded: restore a backup instead")
