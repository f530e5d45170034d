"""Patching: facts from apt, dnf and Windows Update, the policy's plan, the apply run."""
