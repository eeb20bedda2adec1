"""The REST API's routers, one per resource: `jobs` (a tenant's work), `agent` (the site agents'
protocol), `sites` (sites and grid caps), `billing` (invoices). What every router needs (the
database session, the caller, the job's public form) is in `deps`; what is refused before a
router sees a request (sizes, rates, secrets in URLs) is in `service/limits.py`."""
