"""Start one service the way production does: ``python -m shared.run <pkg>.service``.

The same as ``nameko run --config config.yaml <pkg>.service``, except that every
line the process writes stays one JSON object: Python warnings go through
``logging`` (``logging.captureWarnings``), so the JSON formatter of config.yaml
writes them, and eventlet's import-time ``EventletDeprecationWarning`` (a
``Warning``, not a ``DeprecationWarning``, and printed before logging is
configured) is filtered out. Extra arguments go to ``nameko run``.
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    logging.captureWarnings(True)
    from nameko.cli.main import main as nameko_main

    sys.argv = ["nameko", "run", "--config", str(CONFIG), *argv]
    return nameko_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
