"""The content store: blobs by digest, part-done downloads, fetch-once claims, stored listings of
large entries, re-hashing. Imports only ``wbsync.core``.
"""
