"""Offline simulator: the real core against a synthetic population on a virtual clock.

`world` is the scenario model (hidden truth about users, and how it changes over time), `run`
the event loop that feeds the core, `oracle` the policy on the true rates that gives each world
its ceiling, `report` the per-arm aggregation of what the core emitted, `cli` the
`sme simulate` command. See docs/SIMULATOR.md.
"""
