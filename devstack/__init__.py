"""Local infrastructure for development and tests: Kafka, PostgreSQL, the whole stack."""
