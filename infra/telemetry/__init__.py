"""Traces, metrics and logs: OpenTelemetry, Prometheus and the standard logging module.

Every process sets these up once in its entry point (`setup_tracing`,
`configure_logging`, a `Metrics` registry) and passes the registry down; the
Kafka publisher and consumer runner call the hooks here, so handlers need no
telemetry code of their own.
"""
