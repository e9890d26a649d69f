"""``python -m kerafine``: the same command line as the ``kerafine`` console script."""

import sys

from kerafine.cli import main

if __name__ == "__main__":
    sys.exit(main())
