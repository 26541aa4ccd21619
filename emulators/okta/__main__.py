"""``python -m emulators.okta``: run the Okta emulator stand-alone."""

import sys

from emulators.okta.app import main

sys.exit(main())
