"""Allow ``python -m mspauto``."""

from mspauto.cli import main

main()
