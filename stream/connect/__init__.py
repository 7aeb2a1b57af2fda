"""Turning settings into clients: librdkafka configuration, Redis clients, topics, groups."""
