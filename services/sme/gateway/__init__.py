"""The gateway service: HTTP API, dashboard, and the ClickHouse sink of the activity topic."""
