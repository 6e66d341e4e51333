"""HTTP clients: Seldon Deploy, the identity provider, Prometheus, notification sinks."""
