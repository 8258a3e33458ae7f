"""`python -m wbsync.testing.server`: the fake W&B server on its own, to try wbsync and to test
pipelines offline.

It serves the demo registry, or one described in a YAML file (``--registry FILE``, format:
schema/fake-registry.schema.json, validated on load), prints the environment variables that
point wandb and wbsync at it, and runs until Ctrl-C (or, with ``--detach``, in the background
until killed). It answers the queries of the wandb releases the tests pin (constraints.txt); a
newer SDK may send queries it does not know.

While it runs it re-reads ``--registry FILE`` whenever the file changes: versions added at the end
of a collection are published, and aliases follow the file (moved, added, removed), on the same
port, so a pipeline can test "the alias moved" without a restart. Versions already published do
not change (W&B's do not either).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from wbsync.testing.fake_server import FakeWandb

ORG = "acme"
PID_VARIABLE = "WBSYNC_FAKE_SERVER_PID"
_POLL_S = 0.2  # how often a running server looks at its registry file


class RegistryError(Exception):
    """The registry file cannot be read or is not valid: the message names the file and where."""


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
        description="Run the fake W&B server (127.0.0.1) with a demo registry or one from a YAML file, and "
                    "print the environment variables that point wandb and wbsync at it.")
    parser.add_argument("--registry", metavar="FILE", type=Path,
                        help="YAML file describing registries, collections, versions and files "
                             "(JSON Schema: wbsync/schema/fake-registry.schema.json in the package); re-read "
                             "whenever it changes, while the server runs")
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="listen on this port of 127.0.0.1 (default: a free one)")
    parser.add_argument("--env-file", metavar="FILE", type=Path,
                        help="once listening, write the variables there as NAME=value lines (atomically): "
                             "`set -a; . FILE; set +a` in a shell, or `cat FILE >> $GITHUB_ENV`")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background: print the variables (as `export` lines, for eval) once "
                             f"listening, then return; `kill ${PID_VARIABLE}` stops it")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        _fail(f"--port {args.port}: a port is a number from 1 to 65535 (0: a free one).")
    spec = load_registry(args.registry) if args.registry else None
    if args.detach:
        _detach(args, spec)
    serve(args, spec, lambda text: print(text, flush=True))


def serve(args: argparse.Namespace, spec: dict[str, Any] | None, ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``ready`` gets the announcement once the server listens."""
    try:
        server = FakeWandb(port=args.port).start()
    except OSError as exc:
        _fail(f"--port {args.port}: cannot listen on 127.0.0.1 port {args.port} ({exc.strerror}). Another "
              "process may be using it: pick another port, or leave --port out for a free one.")
    try:
        if spec is None:
            from wbsync.testing.demo import publish_demo

            publish_demo(server)
        else:
            publish(server, spec)
        if args.env_file is not None:
            _write_env_file(args.env_file, server)
        if args.registry is not None:
            threading.Thread(target=_follow, args=(server, args.registry), name="registry-file", daemon=True).start()
        ready(announcement(server))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    finally:
        server.stop()


def environment(server: FakeWandb) -> dict[str, str]:
    return {"WANDB_BASE_URL": server.url, "WANDB_API_KEY": server.api_key, "WANDB_ENTITY": "myteam",
            "NO_PROXY": "127.0.0.1,localhost", PID_VARIABLE: str(os.getpid())}


def announcement(server: FakeWandb) -> str:
    lines = [f"# Fake W&B server at {server.url} (org {ORG!r}, team 'myteam', user 'alice'); "
             f"Ctrl-C or `kill ${PID_VARIABLE}` stops it."]
    return "\n".join(lines + [f"export {name}={value}" for name, value in environment(server).items()])


def _write_env_file(path: Path, server: FakeWandb) -> None:
    """Whole or absent (a temp file, then a rename): a script waiting for it never reads half."""
    text = "".join(f"{name}={value}\n" for name, value in environment(server).items())
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        _fail(f"--env-file {path}: cannot write it ({exc.strerror}).")


def _detach(args: argparse.Namespace, spec: dict[str, Any] | None) -> NoReturn:
    """Fork; the child serves with its output off the terminal (so `eval "$(...)"` returns), the
    parent prints what the child announces once it listens (or its error) and exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: its own session, so the shell's Ctrl-C and hang-up do not reach it
        os.close(read_end)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        stderr_copy = os.dup(2)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        announced = os.fdopen(write_end, "w")
        sys.stderr = os.fdopen(stderr_copy, "w")  # errors before it listens go to the parent, through the pipe

        def ready(text: str) -> None:
            announced.write(text + "\n")
            announced.close()  # the parent's read ends: it prints and returns
            os.dup2(devnull, 2)
            sys.stderr = open(os.devnull, "w")

        code = 1
        try:
            serve(args, spec, ready)
        except SystemExit as exc:  # _fail: its message went to the caller's stderr
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # a bug: say it (to the caller, before it listens) rather than vanish
            print(f"error: the fake server stopped: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)  # never back into the caller's code: this process is the server
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    if not text.startswith("# Fake W&B server"):
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status) or 2)
    print(text, end="", flush=True)
    raise SystemExit(0)


def _follow(server: FakeWandb, path: Path) -> None:
    """Re-read the registry file whenever it changes; a broken edit is reported and ignored."""
    seen = _signature(path)
    while True:
        threading.Event().wait(_POLL_S)
        now = _signature(path)
        if now == seen:
            continue
        seen = now
        try:
            publish(server, read_registry(path))
        except (RegistryError, ValueError, KeyError) as exc:
            print(f"error: {exc} The server goes on with the registry it had.", file=sys.stderr, flush=True)
            continue
        print(f"# re-read {path}", file=sys.stderr, flush=True)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def load_registry(path: Path) -> dict[str, Any]:
    """The YAML document at ``path``, checked against the published schema; SystemExit(2) with
    the file, the place in it and the problem otherwise."""
    try:
        return read_registry(path)
    except RegistryError as exc:
        _fail(str(exc))


def read_registry(path: Path) -> dict[str, Any]:
    """The YAML document at ``path``, checked against the published schema; RegistryError otherwise."""
    import yaml

    from wbsync.core.schemas import validator

    try:
        text = _read_bounded(path)
        _check_events(path, yaml.parse(text, Loader=yaml.SafeLoader))
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry file: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise RegistryError(f"{path}: not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    errors = sorted(validator("fake-registry").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        import jsonschema

        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in error.absolute_path) or "the document"
        raise RegistryError(f"{path}: {where}: {error.message}. The format is described by "
                            "fake-registry.schema.json (wbsync/schema/ in the package).")
    total = sum(len(v.encode()) if isinstance(v, str) else v["size"] for registry in doc["registries"].values()
                for body in registry.values() for version in body["versions"] for v in version["files"].values())
    if total > MAX_TOTAL_CONTENT:
        raise RegistryError(f"{path}: the files it declares hold {total:,} bytes in all; the fake server keeps "
                            f"every file in memory and serves at most {MAX_TOTAL_CONTENT:,}. Declare fewer or "
                            "smaller files.")
    return dict(doc)


def _read_bounded(path: Path) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES (not /dev/zero, not a FIFO)."""
    from wbsync.core.safeio import NotRegularFile, TooLarge, read_regular

    try:
        data = read_regular(path, MAX_FILE_BYTES, follow=True)
    except NotRegularFile:
        raise RegistryError(f"{path}: not a regular file; give a YAML file.") from None
    except TooLarge:
        raise RegistryError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes; a registry file is a short "
                            "description (file contents are given by size, not spelled out).") from None
    return data.decode("utf-8")


def _check_events(path: Path, events: Any) -> None:
    """Refuse YAML aliases (an alias bomb expands a few lines into gigabytes) and nesting deeper
    than MAX_DEPTH, from the parser's event stream, before anything is built from it."""
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise RegistryError(f"{path}: line {line}: YAML anchors and aliases (&name, *name) are not accepted; "
                                "write the value out.")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise RegistryError(f"{path}: line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} "
                                    "levels; the format needs 6.")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _fail(message: str) -> NoReturn:
    """Bad input: the message on stderr, exit 2 (as wbsync's own commands)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def publish(server: FakeWandb, spec: dict[str, Any]) -> None:
    """Bring the server up to ``spec``: create its registries, log each collection's versions the
    server does not have yet, in order (v0 first), then set every collection's aliases as the
    file gives them. Running it again on the same spec changes nothing."""
    for registry, collections in spec["registries"].items():
        if registry not in ("model", "dataset") and not server.has_registry(ORG, registry):
            server.add_registry(ORG, registry)
        for collection, body in collections.items():
            have = server.version_count(ORG, registry, collection)
            for version in body["versions"][have:]:
                files = {path: _content(path, value) for path, value in version["files"].items()}
                server.log_artifact(ORG, registry, collection, files, type=body.get("type", "model"),
                                    aliases=version.get("aliases", []),
                                    digest_algorithm=version.get("digest_algorithm", "md5"))
            aliases = {a: i for i, version in enumerate(body["versions"]) for a in version.get("aliases", [])}
            server.set_aliases(ORG, registry, collection, aliases)


def _content(path: str, value: str | dict[str, int]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    size, out, block = value["size"], bytearray(), hashlib.sha256(path.encode()).digest()
    while len(out) < size:  # stable pseudo-random bytes: the same file each run
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])
