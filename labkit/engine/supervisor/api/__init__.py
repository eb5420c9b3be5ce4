"""The supervisor's gRPC contract: supervisor.proto and its generated stubs (see regen.py)."""
