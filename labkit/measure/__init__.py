"""Measurements as records (STYLE C15): psutil/cgroup samplers and the runtime benchmark.

``labkit.measure.sampler``: ProcessSampler, CgroupSampler, to_dataframe.
``labkit.measure.bench_runtime``: start-to-exit latency of labkit-runtime vs runc and crun.
"""

__all__ = ["bench_runtime", "sampler"]
