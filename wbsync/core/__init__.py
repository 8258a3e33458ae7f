"""The bottom layer: data types, errors, digests, reference parsing, what may be shown, atomic writes
and file locks. Imports nothing of wbsync above it.
"""

# The name wbsync is installed by (the command and the import package stay `wbsync`): `wbsync`
# on the package index is an unrelated project. Every message that prints an install line
# takes the name from here; tests/test_distribution_name.py checks every such line.
DISTRIBUTION = "wbsync-lock"


def pip_install(extra: str = "", *, upgrade: bool = False) -> str:
    """The command that installs wbsync (with an extra), as a message prints it."""
    spec = f"'{DISTRIBUTION}[{extra}]'" if extra else DISTRIBUTION
    return " ".join(["pip", "install", *(["-U"] if upgrade else []), spec])
