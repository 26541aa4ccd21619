"""``python -m gateway.emulators.okta``: run the Okta emulator stand-alone."""

import sys

from gateway.emulators.okta.app import main

sys.exit(main())
