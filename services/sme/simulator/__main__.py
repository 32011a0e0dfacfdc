"""`python -m sme.simulator`: the `sme simulate` command on its own."""

from __future__ import annotations

import sys

from sme.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
