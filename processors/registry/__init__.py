"""Versioned, immutable model artifacts."""
