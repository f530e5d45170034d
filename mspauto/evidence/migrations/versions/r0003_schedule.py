"""The control node's schedule: one row per tick (its unique key is the lock that makes
two schedulers run it once), per job up to when its ticks were handled, each
notification per channel (sent once, retried, its last error kept), and one PSA ticket
per SLA breach.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept if present: a store whose owner dropped its version table (to make it look
    # older) still has them, and is upgraded again from 0001.
    present = sa.inspect(op.get_bind()).get_table_names()
    if "schedule_runs" not in present:
        _create_runs()
    if "schedule_notifications" not in present:
        op.create_table(
            "schedule_notifications",
            sa.Column("event", sa.String(500), primary_key=True),
            sa.Column("channel", sa.String(300), primary_key=True),
            sa.Column("client", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_try", sa.String(40), nullable=False),
            sa.Column("last_error", sa.Text, nullable=False),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("sent_at", sa.String(40)),
        )
    if "schedule_psa_tickets" not in present:
        op.create_table(
            "schedule_psa_tickets",
            sa.Column("breach", sa.String(500), primary_key=True),
            sa.Column("client", sa.String(128), nullable=False),
            sa.Column("system", sa.String(32), nullable=False),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("ticket", sa.String(64)),
            sa.Column("summary", sa.Text, nullable=False),
            sa.Column("pending_note", sa.Text),
            sa.Column("pending_tick", sa.String(500)),
            sa.Column("last_tick", sa.String(500)),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_try", sa.String(40), nullable=False),
            sa.Column("last_error", sa.Text, nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False),
        )
    if "schedule_jobs" not in present:
        op.create_table(
            "schedule_jobs",
            sa.Column("job", sa.String(400), primary_key=True),
            sa.Column("seen_until", sa.String(40), nullable=False),
        )


def _create_runs() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("job", sa.String(400), nullable=False),
        sa.Column("due", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("heartbeat_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("run_pid", sa.Integer),
    )
    op.create_index("schedule_runs_by_job", "schedule_runs", ["job", "due"])


def downgrade() -> None:
    # Refused like every evidence revision: a store is never downgraded.
    raise CommandError("evidence is never downgraded: restore a backup instead")
