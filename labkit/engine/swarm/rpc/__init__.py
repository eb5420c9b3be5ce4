"""The node <-> manager gRPC contract (swarm.proto), its stubs, server and client."""
