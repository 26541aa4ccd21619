"""Stand-alone entry point: ``python -m gateway.emulators.entra --users FILE``."""

import sys

from gateway.emulators.entra.app import main

if __name__ == "__main__":
    sys.exit(main())
