"""suanli (算力): a scheduler for a compute-power network.

The package is laid out by concern: `model` (scenario schema, series, network graph),
`energy` (the site energy balance), `accounting` (schedule validation and metrics),
`scheduling` (the pure scheduler: state, policies), `sim` (the event engine and outputs)
and `cli` (the command line). Data flows one way: scenario -> scheduler -> decisions ->
accounting -> outputs.
"""

__version__ = "0.1.0"
