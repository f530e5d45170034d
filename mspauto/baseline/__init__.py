"""Security baselines: rule packs as data, audited in one script per host, scored."""
