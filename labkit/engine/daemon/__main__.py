import sys

from labkit.engine.daemon.main import main

sys.exit(main())
