"""One module per CLI verb; each registers itself on wbsync.cli.cli when imported."""
