"""What a worker says about itself: metrics, health endpoints, logs, announcements, status."""
