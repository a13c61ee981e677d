"""The daemon: a supervisor keeping worker processes alive, and the workers that claim and run processes.

See :mod:`plait.daemon.worker` (leases, parking, graceful stop),
:mod:`plait.daemon.supervisor` (restarts, one per profile) and
:mod:`plait.daemon.client` (start, stop, status, incr, decr, logs).
"""
