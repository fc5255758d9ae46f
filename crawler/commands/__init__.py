"""The command line's commands that are more than a line: one module per command."""
