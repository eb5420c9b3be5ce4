"""The ``labkit`` command: a small dispatcher (main.py) and one module per command group."""
