"""mspauto: maintenance automation for managed service providers.

Policies written as YAML run proactive maintenance across many clients' fleets, and
every run leaves evidence from which each client's monthly SLA report is built.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
