"""The benchmark's fake W&B server, in its own process: `python -m bench.server --info PATH [sizes]`.

It builds the benchmark world (see ``Sizes``) in a ``FakeWandb``, writes what the harness
needs to ``--info`` (URL, API key, and every file's directUrl for the wire-limit client), prints
``READY`` on stdout, then answers one-line commands on stdin:

    count   -> the number of requests recorded since the last ``clear`` (a JSON line)
    ops     -> a JSON list of "METHOD path-or-operation" of those requests
    clear   -> forget recorded requests
    network NAME      -> file links cross this network profile from now on (loopback, cloud, far)
    lifetime SECONDS  -> file links handed out from now on expire after SECONDS ("none": never)
    alias C A N -> move alias A of collection C to vN
    quit    -> stop

Running the server in its own process keeps the harness's (and the measured client's) GIL
out of its way: with two cores, a server thread inside the measured process would compete
with the client for one interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wbsync.testing import FakeWandb, LinkPolicy

ORG = "acme"
KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    small_files: int = 10_000  # one artifact of many small files
    small_size: int = 4 * KiB
    large_files: int = 3  # one artifact of a few large files
    large_mib: int = 256
    noop_artifacts: int = 5  # the no-op sync: this many artifacts ...
    noop_files: int = 10_000  # ... holding this many files in all
    noop_size: int = 4 * KiB
    lock_artifacts: int = 50  # lock resolution: this many collections
    lock_files: int = 10  # files in each (resolution lists them)
    net_one_mib: int = 2100  # the network cases (bench/network.py): 1 file above the SDK's 2 GiB split,
    net_two_mib: int = 1536  # 2 files below it,
    net_small_files: int = 2000  # and many small files
    scale_files: int = 0  # issue 17: one artifact of this many tiny files, in two versions (1% differ)
    scale_tree_files: int = 0  # ... one of this many (two versions too) placed on disk: no-op, verify, move
    scale_cold_files: int = 0  # ... and one of this many for the cold sync

    @classmethod
    def quick(cls) -> Sizes:
        return cls(small_files=1_000, large_files=3, large_mib=32, noop_artifacts=5, noop_files=2_000,
                   lock_artifacts=10, lock_files=10, net_one_mib=160, net_two_mib=96, net_small_files=500)


# Collections (in the "dataset" registry) the world holds, by role.
SCALE = "scale"
SCALE_TREE = "scale-tree"
SCALE_COLD = "scale-cold"
SMALL = "small-files"
LARGE = "large-files"
LARGE_QUARTER = "large-files-quarter"  # the same shape at a quarter of the size: is peak RSS flat?
NET_ONE = "net-one-file"
NET_TWO = "net-two-files"
NET_SMALL = "net-small-files"


def noop_collection(i: int) -> str:
    return f"noop-{i}"


def lock_collection(i: int) -> str:
    return f"lock-{i:02d}"


def large_blob(index: int, mib: int) -> bytes:
    """``mib`` MiB of incompressible, distinct bytes, cheaply: one MiB of urandom repeated,
    each MiB block stamped with (file index, block number) so no two blocks or files are equal."""
    base = os.urandom(MiB)
    data = bytearray(base) * mib
    for block in range(mib):
        at = block * MiB
        data[at : at + 16] = index.to_bytes(8, "little") + block.to_bytes(8, "little")
    return bytes(data)


def small_files(count: int, size: int, prefix: str = "") -> dict[str, bytes]:
    """``count`` distinct files of ``size`` bytes in 100-file folders (``d000/f00000.bin``)."""
    pool = os.urandom(count * size)
    return {f"{prefix}d{i // 100:03d}/f{i:05d}.bin": pool[i * size : (i + 1) * size] for i in range(count)}


def scale_path(i: int) -> str:
    return f"d{i // 1000:04d}/f{i:07d}.bin"


def scale_content(i: int, changed: bool = False) -> bytes:
    """16 distinct bytes per file, known to the harness too (it fills a content store with them)."""
    return b"%014dx\n" % i if changed else b"%015d\n" % i


def scale_files(count: int, changed: int = 0) -> dict[str, bytes]:
    """``count`` files in 1,000-file folders; the first ``changed`` have other bytes (a version move)."""
    return {scale_path(i): scale_content(i, i < changed) for i in range(count)}


def build(srv: FakeWandb, sizes: Sizes) -> dict[str, dict[str, object]]:
    """Publish every benchmark artifact; returns collection -> {artifact_id, version, bytes, urls}."""
    logged: dict[str, dict[str, object]] = {}

    def log(collection: str, files: dict[str, bytes], aliases: tuple[str, ...] = ("production",),
            urls: bool = True) -> None:
        version = srv.log_artifact(ORG, "dataset", collection, files, type="dataset", aliases=aliases)
        logged[collection] = {
            "artifact_id": version.artifact_id,
            "version": version.version,
            "files": len(files),
            "bytes": sum(len(d) for d in files.values()),
            "urls": [srv.file_url(version.artifact_id, path) for path in sorted(files)] if urls else [],
        }

    # A count of 0 leaves a role out (the harness does so for cases it does not run).
    if sizes.small_files:
        log(SMALL, small_files(sizes.small_files, sizes.small_size))
    if sizes.large_files:
        log(LARGE, {f"shard-{i}.bin": large_blob(i, sizes.large_mib) for i in range(sizes.large_files)})
        quarter = max(1, sizes.large_mib // 4)
        log(LARGE_QUARTER, {f"shard-{i}.bin": large_blob(100 + i, quarter) for i in range(sizes.large_files)})
    for i in range(sizes.noop_artifacts if sizes.noop_files else 0):
        per = sizes.noop_files // sizes.noop_artifacts
        log(noop_collection(i), small_files(per, sizes.noop_size, prefix=f"a{i}/"))
    for i in range(sizes.lock_artifacts):
        log(lock_collection(i), small_files(sizes.lock_files, 1 * KiB))
    if sizes.net_one_mib:
        log(NET_ONE, {"model.safetensors": large_blob(200, sizes.net_one_mib)})
    if sizes.net_two_mib:
        log(NET_TWO, {f"model-{i}.safetensors": large_blob(300 + i, sizes.net_two_mib) for i in range(2)})
    if sizes.net_small_files:
        log(NET_SMALL, small_files(sizes.net_small_files, 4 * KiB))
    for collection, count in ((SCALE, sizes.scale_files), (SCALE_TREE, sizes.scale_tree_files)):
        if count:  # v0 (production), then v1 with 1% of the files changed (alias "next")
            log(collection, scale_files(count), urls=False)
            srv.log_artifact(ORG, "dataset", collection, scale_files(count, changed=count // 100),
                             type="dataset", aliases=("next",))
    if sizes.scale_cold_files:
        log(SCALE_COLD, scale_files(sizes.scale_cold_files), urls=False)
    return logged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--info", required=True, type=Path, help="where to write the world's description (JSON)")
    parser.add_argument("--sizes", default="{}", help="JSON overrides of bench.server.Sizes fields")
    parser.add_argument("--quick", action="store_true", help="start from Sizes.quick()")
    args = parser.parse_args(argv)
    base = Sizes.quick() if args.quick else Sizes()
    sizes = Sizes(**{**asdict(base), **json.loads(args.sizes)})
    started = time.perf_counter()
    with FakeWandb() as srv:
        logged = build(srv, sizes)
        info = {"url": srv.url, "api_key": srv.api_key, "org": ORG, "sizes": asdict(sizes),
                "collections": logged, "build_s": time.perf_counter() - started, "pid": os.getpid()}
        args.info.write_text(json.dumps(info))
        srv.clear_requests()
        print("READY", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(json.dumps(len(srv.requests)), flush=True)
            elif command == "ops":
                print(json.dumps([f"{r.method} {r.operation or r.path}" for r in srv.requests]), flush=True)
            elif command == "clear":
                srv.clear_requests()
                print("ok", flush=True)
            elif command.startswith("network "):
                srv.network = command.split(" ", 1)[1]
                print("ok", flush=True)
            elif command.startswith("lifetime "):
                value = command.split(" ", 1)[1]
                srv.links = LinkPolicy(lifetime_s=None if value == "none" else float(value))
                print("ok", flush=True)
            elif command.startswith("alias "):  # alias COLLECTION ALIAS INDEX: move an alias
                _, collection, alias, index = command.split()
                srv.set_alias(ORG, "dataset", collection, alias, int(index))
                print("ok", flush=True)
            elif command == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)


if __name__ == "__main__":
    main()
