"""``wbsync.listing``, the address the README gives for reading a large entry's files: they live
in ``wbsync.store.listing``; this module re-exports what a user of the lock needs."""

from wbsync.store.listing import StoredFiles, is_stored, iter_files

__all__ = ["StoredFiles", "is_stored", "iter_files"]
