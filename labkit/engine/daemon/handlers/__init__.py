"""Route handlers, one module per resource (docker-py's shape); each handler <= ~10 lines."""
