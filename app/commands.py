"""The ``admc`` console script (``[project.scripts]`` in pyproject.toml), composed here, at the top of
the layers: the core commands (:mod:`admc.cli`: train, calibrate, eval, bench, info, import), the
extractor commands (:mod:`extractors.dataset.commands`: extract, manifest), and the text encoder
``admc import mintrec`` uses when no ``--text-features`` are given
(:class:`extractors.models.text.TextEncoder`, which the core importer takes as an argument).
``python -m app.commands ARGS`` is the same as ``admc ARGS``.
"""

from __future__ import annotations

import sys

from admc.cli import build_parser as core_parser
from admc.cli import main as core_main
from extractors.dataset.commands import add_commands as add_extractor_commands


def _text_encoder():
    """The live text extractor, built only when ``import mintrec`` needs it (no --text-features)."""
    from extractors.models.text import TextEncoder

    return TextEncoder()


def add_commands(sub, parser) -> None:
    """The layers' additions to the core parser: ``extract`` and ``manifest``, and the text encoder."""
    parser.set_defaults(make_text_encoder=_text_encoder)
    add_extractor_commands(sub, parser)


def build_parser():
    """The whole ``admc`` parser."""
    return core_parser((add_commands,))


def main(argv: list[str] | None = None) -> int:
    """The ``admc`` console script."""
    return core_main(argv, (add_commands,))


if __name__ == "__main__":
    sys.exit(main())
