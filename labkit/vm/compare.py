"""This host next to the VM: ``labkit doctor`` run in both places, one table (notebook 00)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.vm._errors import VMError

if TYPE_CHECKING:
    from labkit.vm.session import VM

DOCTOR = ["python", "-m", "labkit.cli.main", "doctor", "--json"]


def doctor_rows(machine: VM) -> list[dict[str, Any]]:
    """``labkit doctor --json`` inside ``machine``: one dict per check."""
    res = machine.run(DOCTOR, capture=True, timeout=600)
    if res.exit_code != 0:
        raise VMError(f"labkit doctor failed in the VM (exit {res.exit_code}): "
                      f"{res.stderr.decode(errors='replace')[-500:]}")
    rows = json.loads(res.stdout)
    if not isinstance(rows, list):
        raise VMError("labkit doctor --json in the VM did not print a list")
    return rows


def side_by_side(host: Any, machine: VM) -> Any:
    """A DataFrame indexed by check name: host status, VM status, and both details.

    ``host`` is labkit.doctor.doctor_table() (index name; columns status, detail, hint).
    """
    import pandas as pd

    vm = pd.DataFrame(doctor_rows(machine)).set_index("name")
    both = pd.DataFrame({"host": host["status"], "vm": vm["status"],
                         "host detail": host["detail"], "vm detail": vm["detail"]})
    return both.reindex([*host.index, *[n for n in vm.index if n not in host.index]])
