"""Executors run an assignment at a site. `local`: subprocesses on this machine."""
