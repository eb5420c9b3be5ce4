"""Test doubles, kept out of the shipped package (psutil keeps its own under tests/ too).

cgroups.py: cgroupfs trees in a directory; daemon.py: an Engine API server on a unix
socket with canned routes; tasks.py: the supervisor's TaskService in memory.  Tests import
them as ``fakes.<name>`` (pyproject's pytest ``pythonpath`` puts tests/ on sys.path).
"""
