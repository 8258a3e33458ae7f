"""One module per CLI verb; wbsync.cli registers them all."""
