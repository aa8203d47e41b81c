"""Development tooling, not deployed: local Kafka and PostgreSQL, the whole stack, the demo."""
