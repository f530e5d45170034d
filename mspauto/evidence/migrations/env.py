"""Alembic's entry point: migrations always run on the connection mspauto hands over
(``mspauto.evidence.migrate``), never on a URL from an alembic.ini."""

from __future__ import annotations

from alembic import context

from mspauto.evidence.migrate import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
