"""Service-level maths: what a client's month of evidence says about its contract.

Pure functions of evidence records and the contract (no host is contacted, nothing is
written): :mod:`mspauto.sla.model` holds the shapes every report format reads,
:mod:`mspauto.sla.compute` fills them.
"""
