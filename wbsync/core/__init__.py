"""The bottom layer: data types, errors, digests, reference parsing, what may be shown, atomic writes
and file locks. Imports nothing of wbsync above it.
"""
