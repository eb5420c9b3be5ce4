"""The swarm leader's orchestrator, scheduler and allocator (issue 13).

Only the leader manager runs it (``Leader.tick`` while ``Manager._leads()``); every
decision is a pure function over a snapshot of the store (model.Plan), written back with
compare-and-swap.  Modules: model (snapshot, plan, writes), reconcile (services -> tasks,
restart policy, node failure, history, deletion), update (rolling updates, rollback),
ipalloc (task, VIP and node addresses), scheduler (placement), keys (overlay keys),
leader (the loop).
"""

from labkit.engine.swarm.orchestrator.leader import Leader

__all__ = ["Leader"]
