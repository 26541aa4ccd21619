"""`python -m gateway ...`."""

import sys

from gateway.cli import main

# Guarded as multiprocessing asks of a main module (hashed_export starts worker processes with
# spawn; CPython does not re-import a `*.__main__` module in them, but a copy of it run as a
# script would be).
if __name__ == "__main__":
    sys.exit(main())
