"""``python -m kerafine.distributed --workers N script.py [args]``: see :mod:`kerafine.distributed.launcher`."""

import sys

from kerafine.distributed.launcher import main

if __name__ == "__main__":
    sys.exit(main())
