"""``python -m admc``: the core commands (train, eval, bench, info, import; :mod:`admc.cli`), e.g.
``torchrun --nproc-per-node 2 -m admc train ...``.  ``admc extract`` and ``admc manifest`` need the
extractors, a layer above this package: the ``admc`` console script (``python -m app.commands``)."""

import sys

from admc.cli import main

sys.exit(main())
