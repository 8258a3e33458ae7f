"""`wbsync cache info|prune|verify`: what the shared content store holds; keep it small and sound.

These commands are about the store, not a project, so they take --json and -q but no
-m/--lockfile/NAMES.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from wbsync.cli.options import Ctx
from wbsync.core.errors import CheckFailed

if TYPE_CHECKING:  # the modules themselves load lazily: `wbsync --help` needs none of them
    from wbsync.cache import CacheInfo, LockUse, PrunePlan, PruneResult, StoreCheck
    from wbsync.store.blobs import Store, StoredBlob

EPILOG = """\b
Examples:
  wbsync cache info                       # size, lockfiles, what a prune would free
  wbsync cache prune                      # remove blobs no existing lockfile needs
  wbsync cache prune --max-size 50GB      # ... then least recently used ones, down to 50 GB
  wbsync cache prune --dry-run --json
  wbsync cache verify                     # re-hash every blob; exit 1 if any was corrupt
"""


def cache_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json and -q, turned into a Ctx."""

    @click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
    @functools.wraps(fn)
    def wrapper(as_json: bool, quiet: bool, **kwargs: Any) -> None:
        click.get_current_context().meta["wbsync_json"] = as_json
        fn(Ctx(None, None, as_json, quiet, verbose=False), **kwargs)

    return wrapper


@click.group(epilog=EPILOG)
def cache() -> None:
    """The content store shared by every project on this machine (WBSYNC_CACHE_DIR)."""


@cache.command(epilog=EPILOG)
@cache_options
def info(ctx: Ctx) -> None:
    """Size, blob count, known lockfiles, and what a prune would free."""
    from wbsync.cache import cache_info, configured_max_size

    result = cache_info(_store(), configured_max_size())
    ctx.emit(_info_text(result), _info_json(result), "cache info")


@cache.command(epilog=EPILOG)
@click.option("--max-size", "max_size", metavar="SIZE", default=None,
              help="Then remove least recently used blobs until the store alone holds at most SIZE "
                   "(10GB, 500MiB, 1.5G, bytes). Default: WBSYNC_CACHE_MAX_SIZE, if set.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
@cache_options
def prune(ctx: Ctx, max_size: str | None, dry_run: bool) -> None:
    """Remove blobs no existing lockfile needs, then least recently used ones over --max-size, and
    part-done downloads no running sync holds (a sync stopped by a full disk leaves one)."""
    from wbsync.cache import configured_max_size
    from wbsync.cache import prune as run_prune
    from wbsync.core.text import parse_size

    limit = parse_size(max_size) if max_size is not None else configured_max_size()
    result = run_prune(_store(), limit, dry_run=dry_run, on_wait=_waiting(ctx))
    ctx.emit(_prune_text(result), _prune_json(result), "cache prune")


@cache.command(epilog=EPILOG)
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=min(8, os.cpu_count() or 1),
              show_default=True, help="Blobs hashed in parallel.")
@cache_options
def verify(ctx: Ctx, jobs: int) -> None:
    """Re-hash every blob; remove and list corrupt ones; exit 1 if any was corrupt."""
    from wbsync.cache import verify_store

    result = verify_store(_store(), jobs, on_wait=_waiting(ctx))
    ctx.emit(_verify_text(result), _verify_json(result), "cache verify")
    if result.corrupt:
        raise CheckFailed("")


def _store() -> Store:
    from wbsync.store.blobs import Store, default_store_dir

    return Store(default_store_dir())


def _waiting(ctx: Ctx) -> Callable[[], None]:
    def say() -> None:
        if not ctx.quiet:
            click.echo("wbsync: waiting for running syncs to finish...", err=True)

    return say


def _size(n: int) -> str:
    from wbsync.core.text import human_size

    return human_size(n)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _count(blobs: Sequence[StoredBlob]) -> dict[str, int]:
    return {"blobs": len(blobs), "bytes": sum(b.size for b in blobs)}


# -- info


def _info_json(r: CacheInfo) -> dict[str, Any]:
    from wbsync.cache import held_bytes

    return {
        "store": str(r.root),
        **_count(r.blobs),
        "held_bytes": held_bytes(r.blobs),
        "max_size": r.max_size,
        "tmp_files": r.tmp_files,
        "tmp_bytes": r.tmp_bytes,
        "locks": [_lock_json(u, r.blobs) for u in r.locks],
        "prune": {**_plan_json(r.would, r.would_tmp.bytes), "tmp_files": r.would_tmp.files,
                  "tmp_bytes": r.would_tmp.bytes},
    }


def _lock_json(use: LockUse, blobs: Sequence[StoredBlob]) -> dict[str, Any]:
    stored = [b for b in blobs if b.key in use.keys]
    return {"path": use.known.path, "exists": use.exists, "valid": use.valid,
            "last_used": use.known.last_used, "blobs": len(use.keys), "stored": len(stored),
            "stored_bytes": sum(b.size for b in stored)}


def _plan_json(plan: PrunePlan, tmp_bytes: int = 0) -> dict[str, Any]:
    return {"removed": _count(plan.unreferenced), "evicted": _count(plan.evicted),
            "freed_bytes": plan.freed_bytes + tmp_bytes}


def _info_text(r: CacheInfo) -> list[str]:
    doc = _info_json(r)
    limit = f"max size {_size(r.max_size)}" if r.max_size is not None else "no max size"
    held = f"{_size(doc['held_bytes'])} held by the store alone (not hardlinked into a project)"
    lines = [f"Store: {r.root}",
             f"  {_n(doc['blobs'], 'blob')}, {_size(doc['bytes'])}; {held}; {limit}",
             f"  {r.tmp_files} temp files, {_size(r.tmp_bytes)} on disk (`wbsync cache prune` removes those "
             "no running sync holds)",
             f"Lockfiles ({len(r.locks)} known):"]
    lines += ["  " + _lock_line(d) for d in doc["locks"]]
    return lines + [_plan_line(r.would, "A prune would remove", r.would_tmp.bytes)]


def _lock_line(d: dict[str, Any]) -> str:
    if not d["exists"]:
        return f"{d['path']}  gone: protects nothing"
    if not d["valid"]:
        return f"{d['path']}  does not parse: protects nothing"
    return (f"{d['path']}  {d['stored']} of {d['blobs']} blobs stored ({_size(d['stored_bytes'])}), "
            f"last used {d['last_used']}")


def _plan_line(plan: PrunePlan, verb: str, tmp_bytes: int = 0) -> str:
    removed, evicted = _count(plan.unreferenced), _count(plan.evicted)
    line = f"{verb} {_n(removed['blobs'], 'blob')} no lockfile needs ({_size(removed['bytes'])})"
    if evicted["blobs"]:
        line += f" and {evicted['blobs']} least recently used ({_size(evicted['bytes'])})"
    if tmp_bytes:
        line += f" and temp files ({_size(tmp_bytes)})"
    return line + f", freeing {_size(plan.freed_bytes + tmp_bytes)}."


# -- prune


def _prune_json(r: PruneResult) -> dict[str, Any]:
    from wbsync.cache import held_bytes

    return {
        "dry_run": r.dry_run,
        "max_size": r.max_size,
        **_plan_json(r.plan, r.tmp_bytes),
        "failed": r.failed,
        "tmp_files": r.tmp_files,
        "tmp_bytes": r.tmp_bytes,
        "listings": {"count": len(r.listings), "bytes": sum(x.size for x in r.listings)},
        "forgotten_locks": r.forgotten,
        "invalid_locks": r.invalid,
        "remaining": {**_count(r.remaining), "held_bytes": held_bytes(r.remaining)},
    }


def _prune_text(r: PruneResult) -> list[str]:
    doc = _prune_json(r)
    lines = [_plan_line(r.plan, "Would remove" if r.dry_run else "Removed", r.tmp_bytes)]
    if r.failed:
        lines.append(f"  {_n(r.failed, 'blob')} could not be removed (permissions?)")
    if r.tmp_files:
        lines.append(f"  temp files: {r.tmp_files}, left by stopped syncs (none that a running sync holds)")
    if r.listings:
        lines.append(f"  and {_n(len(r.listings), 'file list')} of large lock entries no lockfile names "
                     f"({_size(doc['listings']['bytes'])})")
    forgotten = "would be forgotten" if r.dry_run else "forgotten"
    lines += [f"  lockfile gone, {forgotten}: {p}" for p in r.forgotten]
    lines += [f"  lockfile does not parse, protects nothing: {p}" for p in r.invalid]
    left = doc["remaining"]
    lines.append(f"{'Would leave' if r.dry_run else 'Left'} {_n(left['blobs'], 'blob')}, {_size(left['bytes'])} "
                 f"({_size(left['held_bytes'])} held by the store alone).")
    return lines


# -- verify


def _verify_json(r: StoreCheck) -> dict[str, Any]:
    return {
        "ok": not r.corrupt,
        "checked": _count(r.checked),
        "corrupt": [{"path": str(b.path), "algorithm": b.algorithm, "hex": b.hex, "size": b.size,
                     "hardlinked": b.nlinks > 1} for b in r.corrupt],
    }


def _verify_text(r: StoreCheck) -> list[str]:
    lines = [f"Checked {_n(len(r.checked), 'blob')} ({_size(sum(b.size for b in r.checked))}).",
             f"{_n(len(r.corrupt), 'corrupt blob')} removed; syncs fetch what they need again." if r.corrupt
             else "Every blob matches its digest."]
    for b in r.corrupt:
        note = "  (hardlinked into a project: run `wbsync verify` there)" if b.nlinks > 1 else ""
        lines.append(f"  corrupt: {b.path}{note}")
    return lines
