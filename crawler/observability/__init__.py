"""What the crawler tells the outside world: metrics, logs, its HTTP server, systemd."""
