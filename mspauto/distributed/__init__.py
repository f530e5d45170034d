"""Runs carried out by Celery workers: the same engine and pipeline, another executor.

The control node records a run's start and end; its hosts go out in batches (a few
hundred hosts each, one Celery task per batch) on the queue of their client (or site).
A worker rebuilds each batch from its own copy of the project (credentials are resolved
there, from references: no secret travels in a message), takes each host before running
it, and writes the host's records to the shared evidence store (PostgreSQL). Delivery
is at least once, so idempotence lives in the database: a host taken once is never run
again, whoever delivers its batch (see docs/distributed.md).
"""
