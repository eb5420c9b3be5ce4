"""One process per container: parent of the container, owner of its stdio and exit status.

See server.py (the loop), ops.py (the control operations), protocol.py (the wire format),
template.py (how shims are started), exec.py (`docker exec`), layout.py (the state dir).
Importing this package imports nothing heavy: the shim has a memory budget (<= 5 MB PSS).
"""
