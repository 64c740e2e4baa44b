"""``python -m formers ...`` (and ``torchrun ... -m formers train ...``): the ``formers`` CLI."""

import sys

from formers.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
