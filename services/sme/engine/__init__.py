"""The engine service: a Faust app that holds per-user state and turns events into commands."""
