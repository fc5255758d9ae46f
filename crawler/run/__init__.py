"""Runs of sources: the scheduler, leases, one run's pipeline and its walk over the pages."""
