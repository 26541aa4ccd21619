"""Stand-alone entry point: ``python -m emulators.entra --users FILE``."""

import sys

from emulators.entra.app import main

if __name__ == "__main__":
    sys.exit(main())
