"""Backup verification: provider facts, RPO judgement, restore drills (docs/backups.md)."""
