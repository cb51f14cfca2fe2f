"""The runtime's core: config, the service base class, metrics and logging."""
