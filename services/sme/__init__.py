"""Sequential Messaging Engine: adaptive multi-step message sequences on Kafka and ClickHouse."""

__version__ = "0.1.0"
