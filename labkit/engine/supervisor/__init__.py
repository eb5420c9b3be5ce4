"""The supervisor (containerd's role): the Tasks gRPC service, one shim per task, live-restore.

Clients use labkit.engine.supervisor.client (TasksClient with asyncio, SupervisorClient
without); the server is main.py.
"""
