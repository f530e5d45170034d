"""Signed checkpoints, and continuity enforced when a record is inserted.

Adds the checkpoints table and the batch signatures (each append's records signed by
the writer, so a checkpoint can tell records a key holder wrote from records that got
in otherwise), both append-only like the records, and replaces every guard with
its current definition: a record is accepted only as its chain's next, and a chain head
only moves to the chain's real last record. Existing records and hashes are untouched;
``mspauto evidence upgrade`` signs each existing chain's first checkpoint afterwards.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

from mspauto.evidence.schema import install_guards

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(128), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(40), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    op.create_index("evidence_checkpoints_by_chain", "evidence_checkpoints", ["chain", "size"])
    op.create_table(
        "evidence_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(128), nullable=False),
        sa.Column("first_seq", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
    )
    op.create_index("evidence_batches_by_chain", "evidence_batches", ["chain", "last_seq"])
    install_guards(op.get_bind(), only_existing=True)  # later revisions add theirs


def downgrade() -> None:
    # Deliberately refused, not missing: going back would drop evidence or its guards.
    raise CommandError("evidence is never downgraded: restore a backup instead")
