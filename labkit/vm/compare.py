"""This host next to the VM: ``labkit doctor`` run in both places, one table (notebook 00).

The host's doctor also runs as a child process (``labkit doctor --json``), not in the caller:
its live checks use pyroute2, whose synchronous API refuses to run in a thread that already
runs an asyncio loop, which is every Jupyter kernel's main thread.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from labkit.vm._errors import VMError
from labkit.vm.recipe import REPO

if TYPE_CHECKING:
    from labkit.vm.session import VM

DOCTOR = ["-m", "labkit.cli.main", "doctor", "--json"]


def doctor_rows(machine: VM | None = None) -> list[dict[str, Any]]:
    """``labkit doctor --json`` on this host (``machine`` None) or inside ``machine``."""
    if machine is None:
        res = subprocess.run([sys.executable, *DOCTOR], cwd=REPO, capture_output=True,
                             timeout=600, check=False)
        code, out, err = res.returncode, res.stdout, res.stderr
    else:
        r = machine.run(["python", *DOCTOR], capture=True, timeout=600)
        code, out, err = r.exit_code, r.stdout, r.stderr
    where = "in the VM" if machine is not None else "on this host"
    if code != 0:
        raise VMError(f"labkit doctor failed {where} (exit {code}): "
                      f"{err.decode(errors='replace')[-500:]}")
    rows = json.loads(out)
    if not isinstance(rows, list):
        raise VMError(f"labkit doctor --json {where} did not print a list")
    return rows


def doctor_frame(machine: VM | None = None) -> Any:
    """doctor_rows() as a DataFrame indexed by check name (columns status, detail, hint),
    the shape of labkit.doctor.doctor_table()."""
    import pandas as pd

    frame = pd.DataFrame(doctor_rows(machine)).set_index("name")
    return frame[["status", "detail", "hint"]].fillna("")


def side_by_side(host: Any, machine: VM) -> Any:
    """A DataFrame indexed by check name: host status, VM status, and both details.

    ``host`` is doctor_frame() or labkit.doctor.doctor_table() (index name; status, detail).
    """
    import pandas as pd

    vm = doctor_frame(machine)
    both = pd.DataFrame({"host": host["status"], "vm": vm["status"],
                         "host detail": host["detail"], "vm detail": vm["detail"]})
    return both.reindex([*host.index, *[n for n in vm.index if n not in host.index]])
