"""The monthly client report's files: HTML and PDF from one Jinja2 template family
(:mod:`~mspauto.report.render`), CSV and JSON, OSCAL assessment results for auditors'
tools (:mod:`~mspauto.report.oscal`), and the signed manifest that lets anyone holding
the MSP's public key check them offline (:mod:`~mspauto.report.manifest`)."""
