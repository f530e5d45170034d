"""The evidence store: hash chains, signed checkpoints, witness, migrations."""
