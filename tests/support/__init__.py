"""Test support: infrastructure fixtures and bounded waits."""
