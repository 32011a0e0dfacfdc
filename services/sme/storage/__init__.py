"""ClickHouse adapter: connection (embedded chdb or server), migrations, inserts, queries."""
