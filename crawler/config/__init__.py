"""The configuration: one YAML file, every key declared once, every problem as FILE:LINE: key."""
