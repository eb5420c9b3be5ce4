"""The swarm: a root CA and mutual TLS between nodes, join tokens, autolock, and a cluster
store on etcd (Raft) shared by the managers; see the modules of this package."""
