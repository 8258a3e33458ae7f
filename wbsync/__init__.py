"""wbsync: lockfile-style sync of Weights & Biases Registry artifacts."""

__version__ = "0.1.0"
