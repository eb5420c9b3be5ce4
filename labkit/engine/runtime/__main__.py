"""python -m labkit.engine.runtime: the same as the labkit-runtime console script."""

import sys

from labkit.engine.runtime.cli import main

sys.exit(main())
