"""The simulator: replays a scenario through a policy on a virtual clock."""
