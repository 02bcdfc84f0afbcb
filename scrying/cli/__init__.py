"""The ``scrying`` command: the only place that reads argv and environment variables."""
