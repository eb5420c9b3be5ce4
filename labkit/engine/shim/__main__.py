"""``python -m labkit.engine.shim CONFIG_JSON``: start one shim without the template.

Prints the shim's pid.  The supervisor normally forks shims from its template instead
(template.py); this entry point is for debugging and for tools that have no supervisor.
"""

import json
import sys

from labkit.engine.shim.template import spawn_shim

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(spawn_shim(json.loads(sys.argv[1])))
