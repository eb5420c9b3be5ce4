"""Checks of notebook 15 (secrets): rotate a secret without changing the file's name."""

from __future__ import annotations

import time

from labkit import errors
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.lab.secrets_demo import SecretsLab

SERVICE, OLD, TARGET = "app", "db_pass", "db_pass"  # the notebook's names


@exercise("15.rotate")
def rotate(ns: Namespace) -> str:
    """The service must use a new secret (another name) as the same file,
    /run/secrets/db_pass; the running task must read the new value there; the old secret
    must be removed from the swarm."""
    demo = defined(ns, "demo", "the SecretsLab (the set-up cell's `demo`)")
    need(isinstance(demo, SecretsLab), f"demo should be the set-up cell's SecretsLab, not "
         f"{type(demo).__name__}")
    try:
        refs = demo.service_secrets(SERVICE)
        names = set(demo.secrets().name)
    except errors.LabkitError as err:
        fail(f"the service {SERVICE} is not there: {err}")
    at_target = [r for r in refs if (r.get("File") or {}).get("Name") == TARGET]
    need(at_target, f"{SERVICE} has no secret at /run/secrets/{TARGET} any more: add the new "
         f"one with target={TARGET!r}, so the program reading that file needs no change")
    new = str(at_target[0].get("SecretName", ""))
    need(new != OLD, f"/run/secrets/{TARGET} is still the secret {OLD!r}: create a new secret "
         "(secrets cannot be changed) and swap it in with demo.swap_secret")
    need(new in demo.values, f"{new!r} was not made with demo.create_secret in this notebook")
    need(OLD not in names, f"the old secret {OLD!r} is still in the swarm: demo.remove_secret"
         f"({OLD!r}) once no service uses it")
    got = b""
    deadline = time.monotonic() + 60  # the update replaces the task: bounded wait
    while True:
        try:
            task = demo.wait_running(SERVICE, 1, timeout=60)[0]
            got = demo.read_secret(task, TARGET)
        except errors.LabkitError as err:
            if time.monotonic() > deadline:
                fail(f"the task of {SERVICE} does not read /run/secrets/{TARGET}: {err}")
        if got == demo.values[new] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    need(got == demo.values[new], f"/run/secrets/{TARGET} in the running task does not hold "
         f"{new!r}'s value: wait until the updated task runs (demo.wait_running)")
    return (f"/run/secrets/{TARGET} now holds {new!r}; {OLD!r} is gone from the swarm, and "
            "the program reading the file never changed")
