"""Alembic migrations of the evidence store (run by ``mspauto evidence upgrade``)."""
