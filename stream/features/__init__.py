"""Adapters of the feature pipeline: the faust-streaming app that writes Redis."""
