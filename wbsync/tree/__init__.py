"""The synced folders: placing files, the state of what wbsync placed, who owns a file,
the tree's fingerprint, the swap journal, version moves, verify.
"""
