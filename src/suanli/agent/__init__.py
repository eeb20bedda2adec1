"""The site agent: registers with the controller, heartbeats, pulls its site's assignments,
runs them with an executor and reports their state and usage (docs/SERVICE.md)."""
