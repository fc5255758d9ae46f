"""Where records go: the sink, the stores, the spool, the quarantine, history and retention."""
