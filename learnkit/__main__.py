"""``python -m learnkit ...``: the same as the ``learnkit`` command (see `learnkit.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
