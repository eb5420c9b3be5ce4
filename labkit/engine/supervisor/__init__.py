"""The supervisor (containerd's role): the Tasks gRPC service, one shim per task, live-restore.

Clients use labkit.engine.supervisor.client.SupervisorClient; the server is main.py.
"""
