"""The evidence store of release 0.1: records, chain heads, outputs, append-only guards.

Stores written by 0.1 have these tables and no version table; ``mspauto evidence
upgrade`` marks them as this revision before going on.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_REFUSED = "evidence is append-only"


def upgrade() -> None:
    op.create_table(
        "evidence_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq", name="evidence_chain_seq"),
    )
    op.create_index("evidence_by_run", "evidence_records", ["run_id"])
    op.create_index("evidence_by_kind", "evidence_records", ["chain", "kind"])
    op.create_table(
        "evidence_chain_heads",
        sa.Column("chain", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "evidence_outputs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    # 0.1's guards, as 0.1 wrote them (0002 replaces them with the current ones).
    tables = ("evidence_records", "evidence_outputs")
    if op.get_context().dialect.name == "sqlite":
        for table in tables:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
                )
        op.execute(
            "CREATE TRIGGER evidence_chain_heads_no_rollback BEFORE UPDATE ON "
            "evidence_chain_heads WHEN NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
        )
        op.execute(
            "CREATE TRIGGER evidence_chain_heads_no_delete BEFORE DELETE ON "
            f"evidence_chain_heads BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
        )
    else:
        op.execute(
            "CREATE OR REPLACE FUNCTION mspauto_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_REFUSED}'; END $$"
        )
        for table in tables:
            op.execute(
                f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "
                f"{table} FOR EACH ROW EXECUTE FUNCTION mspauto_append_only()"
            )
        op.execute(
            "CREATE OR REPLACE FUNCTION mspauto_head_forward() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq "
            f"OR NEW.chain <> OLD.chain THEN RAISE EXCEPTION '{_REFUSED}'; END IF; "
            "RETURN NEW; END $$"
        )
        op.execute(
            "CREATE OR REPLACE TRIGGER evidence_chain_heads_forward BEFORE UPDATE OR DELETE "
            "ON evidence_chain_heads FOR EACH ROW EXECUTE FUNCTION mspauto_head_forward()"
        )


def downgrade() -> None:
    # Deliberately refused, not missing: going back would drop evidence or its guards.
    raise CommandError("evidence is never downgraded: restore a backup instead")
