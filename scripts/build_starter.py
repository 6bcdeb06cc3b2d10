#!/usr/bin/env python
"""Build the starter checkpoint ``weights/starter/`` from real recordings, in one command::

    .venv/bin/python scripts/build_starter.py            # ~1 h on 2 CPU cores from scratch

The build is the package :mod:`scripts.starter` (recipe, stages, card template); ``--help`` lists the
options and the stages.
"""

import sys

from scripts.starter.build import main

if __name__ == "__main__":
    sys.exit(main())
