"""``python -m labkit.cli ...`` is ``labkit ...`` (the Makefile uses it for ``vm``)."""

import sys

from labkit.cli.main import main

sys.exit(main())
