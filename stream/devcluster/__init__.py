"""Local development infrastructure: Docker engine, offline-built images, containers."""
