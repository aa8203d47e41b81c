"""Operations: readiness, the aggregator group's lag, and the Prometheus metrics of the API."""
