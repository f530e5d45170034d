"""Worker keys: a batch signature may be by a worker's own key (``signer``: the
fingerprint of the MSP-signed certificate vouching for it, kept in ``evidence_signers``)
instead of the MSP's key.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

from mspauto.evidence.schema import guard_names, install_guards

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept if present, as 0005's table: a store whose version row was dropped (to make
    # it look older) is upgraded again from an earlier revision.
    inspector = sa.inspect(op.get_bind())
    if "evidence_signers" not in inspector.get_table_names():
        op.create_table(
            "evidence_signers",
            sa.Column("fingerprint", sa.String(64), primary_key=True),
            sa.Column("certificate", sa.Text, nullable=False),
        )
    if "signer" not in {c["name"] for c in inspector.get_columns("evidence_batches")}:
        # Every existing batch was signed with the MSP's key: NULL says so.
        op.add_column("evidence_batches", sa.Column("signer", sa.String(64), nullable=True))
    # Append-only like the signatures that name them: a deleted certificate would
    # leave a worker's records unsigned.
    bind = op.get_bind()
    install_guards(bind, [n for n in guard_names(bind.dialect.name) if "evidence_signers" in n])


def downgrade() -> None:
    # Refused like every evidence revision: a store is never downgraded.
    raise CommandError("evidence is never downgraded: restore a backup instead")
