import sys

from labkit.engine.supervisor.main import main

sys.exit(main())
