"""Each tick's outcome goes into its client's evidence chain (a ``scheduled_run``
record): ``schedule_runs.in_evidence_at`` says when it was appended, so a tick ended
while the store or the control node failed is appended on a later pass.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept if present, as 0003's tables: a store whose version row was dropped (to make
    # it look older) is upgraded again from an earlier revision.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("schedule_runs")}
    if "in_evidence_at" not in columns:
        op.add_column("schedule_runs", sa.Column("in_evidence_at", sa.String(40)))


def downgrade() -> None:
    # Refused like every evidence revision: a store is never downgraded.
    raise CommandError("evidence is never downgraded: restore a backup instead")
