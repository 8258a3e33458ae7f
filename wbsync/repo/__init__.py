"""The repository's files: the manifest and its editor, the lockfile, the project that finds
both, git revisions and lock diffs.
"""
