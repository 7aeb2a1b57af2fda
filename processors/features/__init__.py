"""Online features: view definitions, the Redis store, an in-process cache, enrichment."""
