"""`python -m wbsync.testing.server`: the fake W&B server on its own, to try wbsync and to test
pipelines offline.

It serves the demo registry, or one described in a YAML file (``--registry FILE``, format:
schema/fake-registry.schema.json, validated on load), prints the environment variables that
point wandb and wbsync at it, and runs until Ctrl-C. It answers the queries of the wandb
releases the tests pin (constraints.txt); a newer SDK may send queries it does not know.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from wbsync.testing.fake_server import FakeWandb

ORG = "acme"
# Bounds on a registry file, so that a hostile or mistaken one is refused (exit 2, naming it)
# instead of ending in MemoryError or RecursionError: the YAML text, its nesting (the format
# needs 6 levels), and the bytes the server would hold for the files it declares (each file's
# content is made and kept in memory, to be hashed and served).
MAX_FILE_BYTES = 4 << 20
MAX_DEPTH = 32
MAX_TOTAL_CONTENT = 1 << 30


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wbsync.testing.server",
        description="Run the fake W&B server (127.0.0.1, a free port) with a demo registry or one from a "
                    "YAML file, and print the environment variables that point wandb and wbsync at it.")
    parser.add_argument("--registry", metavar="FILE", type=Path,
                        help="YAML file describing registries, collections, versions and files "
                             "(JSON Schema: wbsync/schema/fake-registry.schema.json in the package)")
    args = parser.parse_args(argv)
    spec = load_registry(args.registry) if args.registry else None
    with FakeWandb() as server:
        if spec is None:
            from wbsync.testing.demo import publish_demo

            publish_demo(server)
        else:
            publish(server, spec)
        print(announcement(server), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)


def announcement(server: FakeWandb) -> str:
    lines = [f"# Fake W&B server at {server.url} (org {ORG!r}, team 'myteam', user 'alice'); Ctrl-C stops it.",
             f"export WANDB_BASE_URL={server.url}",
             f"export WANDB_API_KEY={server.api_key}",
             "export WANDB_ENTITY=myteam",
             "export NO_PROXY=127.0.0.1,localhost"]
    return "\n".join(lines)


def load_registry(path: Path) -> dict[str, Any]:
    """The YAML document at ``path``, checked against the published schema; SystemExit(2) with
    the file, the place in it and the problem otherwise."""
    import yaml

    from wbsync.core.schemas import validator

    try:
        text = _read_bounded(path)
        _check_events(path, yaml.parse(text, Loader=yaml.SafeLoader))
        doc = yaml.safe_load(text)
    except OSError as exc:
        _fail(f"{path}: cannot read the registry file: {exc.strerror}.")
    except UnicodeDecodeError:
        _fail(f"{path}: not UTF-8 text.")
    except yaml.YAMLError as exc:
        _fail(f"{path}: not valid YAML: {exc}")
    errors = sorted(validator("fake-registry").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        import jsonschema

        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in error.absolute_path) or "the document"
        _fail(f"{path}: {where}: {error.message}. The format is described by "
              "fake-registry.schema.json (wbsync/schema/ in the package).")
    total = sum(len(v.encode()) if isinstance(v, str) else v["size"] for registry in doc["registries"].values()
                for body in registry.values() for version in body["versions"] for v in version["files"].values())
    if total > MAX_TOTAL_CONTENT:
        _fail(f"{path}: the files it declares hold {total:,} bytes in all; the fake server keeps every file in "
              f"memory and serves at most {MAX_TOTAL_CONTENT:,}. Declare fewer or smaller files.")
    return dict(doc)


def _read_bounded(path: Path) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES (not /dev/zero, not a FIFO)."""
    import os
    import stat

    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            _fail(f"{path}: not a regular file; give a YAML file.")
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        _fail(f"{path}: larger than {MAX_FILE_BYTES:,} bytes; a registry file is a short description "
              "(file contents are given by size, not spelled out).")
    return data.decode("utf-8")


def _check_events(path: Path, events: Any) -> None:
    """Refuse YAML aliases (an alias bomb expands a few lines into gigabytes) and nesting deeper
    than MAX_DEPTH, from the parser's event stream, before anything is built from it."""
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            _fail(f"{path}: line {line}: YAML anchors and aliases (&name, *name) are not accepted; write the "
                  "value out.")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                _fail(f"{path}: line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels; the "
                      "format needs 6.")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _fail(message: str) -> NoReturn:
    """Bad input: the message on stderr, exit 2 (as wbsync's own commands)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def publish(server: FakeWandb, spec: dict[str, Any]) -> None:
    """Create the registries of ``spec`` and log each collection's versions in order (v0 first)."""
    for registry, collections in spec["registries"].items():
        if registry not in ("model", "dataset"):
            server.add_registry(ORG, registry)
        for collection, body in collections.items():
            for version in body["versions"]:
                files = {path: _content(path, value) for path, value in version["files"].items()}
                server.log_artifact(ORG, registry, collection, files, type=body.get("type", "model"),
                                    aliases=version.get("aliases", []),
                                    digest_algorithm=version.get("digest_algorithm", "md5"))


def _content(path: str, value: str | dict[str, int]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    size, out, block = value["size"], bytearray(), hashlib.sha256(path.encode()).digest()
    while len(out) < size:  # stable pseudo-random bytes: the same file each run
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])
