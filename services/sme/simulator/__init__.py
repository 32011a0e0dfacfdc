"""Offline simulator: the real core against a synthetic population on a virtual clock.

`world` is the scenario model (hidden truth about users), `run` the event loop that feeds the
core, `report` the per-arm aggregation of what the core emitted, `cli` the `sme simulate`
command. See docs/SIMULATOR.md.
"""
