"""``python -m scripts.starter``: the starter build (:mod:`scripts.starter.build`)."""

import sys

from scripts.starter.build import main

sys.exit(main())
