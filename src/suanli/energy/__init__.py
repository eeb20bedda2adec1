"""Energy: the site energy balance (MODEL.md §4), solar and wind models, tariffs and grid carbon (MODEL.md §2)."""
