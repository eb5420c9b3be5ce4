"""``python -m labkit.vm ...`` is ``labkit vm ...`` (used by the Makefile)."""

import sys

from labkit.cli.vm import main

sys.exit(main())
