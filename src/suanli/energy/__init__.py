"""Energy: the site energy balance (MODEL.md §4); renewable models come with the energy issue."""
