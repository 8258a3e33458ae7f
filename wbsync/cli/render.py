"""Results -> text for people, or one JSON document for machines. Deciding happens elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wbsync.cli import style
from wbsync.core.text import human_size, plural

if TYPE_CHECKING:  # annotations only: `verify` and a no-op `sync` should not import every command's module
    from wbsync.decide.outdated import OutdatedReport
    from wbsync.decide.resolve import PinChange
    from wbsync.sync import AddResult, LockResult, SyncResult
    from wbsync.tree.verify import EntryReport


def change_line(c: PinChange) -> str:
    """e.g. `phi3  production  v3 -> v5  (+2 files, -1 file, 3 changed, +1.2 GB)`."""
    d = c.delta
    if c.new is None:
        return f"{style.name(c.name)}  {style.warn('removed from the manifest')} (was {c.old.version if c.old else '?'})"
    if c.old is None:
        return (f"{style.name(c.name)}  {c.selector}  {style.good('new ' + c.new.version)}  "
                f"({plural(len(c.new.files), 'file')}, {human_size(c.new.size)})")
    sign = "+" if d.bytes >= 0 else ""
    moved = (style.version(f"{c.old.version} -> {c.new.version}") if c.old.version != c.new.version
             else f"{style.version(c.new.version)} (content changed)")
    return (f"{style.name(c.name)}  {c.selector}  {moved}  "
            f"(+{plural(d.added, 'file')}, -{plural(d.removed, 'file')}, {d.changed} changed, "
            f"{sign}{human_size(d.bytes)})")


def change_json(c: PinChange) -> dict[str, Any]:
    d = c.delta
    return {
        "name": c.name,
        "selector": c.selector,
        "old_version": c.old.version if c.old else None,
        "new_version": c.new.version if c.new else None,
        "old_resolved": c.old.resolved if c.old else None,
        "new_resolved": c.new.resolved if c.new else None,
        "files_added": d.added,
        "files_removed": d.removed,
        "files_changed": d.changed,
        "bytes_delta": d.bytes,
    }


def lock_text(r: LockResult, lockfile: str) -> list[str]:
    if not r.changes:
        return [f"{lockfile} is up to date ({plural(len(r.lock.artifacts), 'entry')})."]
    verb = "Updated" if r.written else "Would update"
    return [f"{verb} {lockfile}:"] + ["  " + change_line(c) for c in r.changes]


def lock_json(r: LockResult, lockfile: str) -> dict[str, Any]:
    return {
        "lockfile": lockfile,
        "written": r.written,
        "changes": [change_json(c) for c in r.changes],
        "entries": {n: {"version": a.version, "resolved": a.resolved, "files": len(a.files), "bytes": a.size}
                    for n, a in sorted(r.lock.artifacts.items())},
    }


def sync_text(r: SyncResult, lockfile: str, verbose: bool) -> list[str]:
    lines = lock_text(r.lock, lockfile) if r.lock and r.lock.changes else []
    if r.noop:
        if verbose:  # what was checked, and how: each file's recorded size, mtime and inode
            lines += [f"  {style.name(e.name)}  {style.version(e.artifact.version)}  -> {e.artifact.path}/  "
                      f"{plural(len(e.artifact.files), 'file')} ({human_size(e.artifact.size)}) as placed"
                      for e in r.plan.entries]
            lines.append("  (each file checked by its size, mtime and inode as recorded when it was placed: "
                         "no file read, no request; `wbsync verify` re-hashes)")
        return lines + [style.good("Up to date:") + f" {plural(sum(len(e.artifact.files) for e in r.plan.entries), 'file')} "
                        f"in {plural(len(r.plan.entries), 'entry')} match {lockfile}."]
    for e in r.plan.entries:
        if not e.changes and not verbose:
            continue
        what = []
        if e.place:
            what.append(f"{len(e.place)} to place ({human_size(sum(a.record.size for a in e.place))})")
        if e.check:
            what.append(f"{len(e.check)} to re-check")
        if e.remove:
            what.append(f"{len(e.remove)} to remove")
        if e.blocked:
            what.append(f"{len(e.blocked)} in the way")
        state = ", ".join(what) or "up to date"
        lines.append(f"  {style.name(e.name)}  {style.version(e.artifact.version)}  -> {e.artifact.path}/  {state}")
    if r.plan.orphans:
        lines.append(f"  {plural(len(r.plan.orphans), 'file')} of entries no longer locked to remove")
    if r.dry_run:
        return [style.warn("Dry run: nothing was changed.") + " Plan:"] + lines
    lines.append(style.good("Synced:") + f" fetched {plural(r.fetched_files, 'file')} ({human_size(r.fetched_bytes)}), "
                 f"placed {r.placed}, removed {r.removed}.")
    lines += [f"  {style.warn('restored')} {p}: wbsync placed it and it was edited since" for p in r.restored]
    lines += [f"  {style.warn('replaced')} {p}: not placed by wbsync, replaced by `--force`" for p in r.replaced]
    return lines


def sync_warnings(r: SyncResult) -> list[str]:
    """What a sync keeps that is not locked, as one line (on every sync, a no-op included), and
    what it did not trust: each is a reason `wbsync verify` may differ."""
    lines = [f"warning: {w}" for w in r.warnings]
    kept = set(r.kept_modified) | set(r.kept_not_placed)
    extra = [p for p in r.extra if p not in kept]
    parts = []
    if r.kept_modified:
        parts.append(f"{', '.join(r.kept_modified)} (placed by wbsync, no longer locked, edited since)")
    if r.kept_not_placed:
        parts.append(f"{', '.join(r.kept_not_placed)} (no longer locked; not the file wbsync placed there, "
                     "e.g. a copy)")
    if extra:
        parts.append(f"{', '.join(extra)} (not locked)")
    if parts:
        lines.append(f"warning: kept {'; '.join(parts)}. wbsync never deletes files it cannot prove it placed "
                     "and that are unchanged; `wbsync verify` lists those in locked folders as extra until "
                     "you move or delete them.")
    return lines


def sync_json(r: SyncResult, lockfile: str) -> dict[str, Any]:
    return {
        "noop": r.noop,
        "dry_run": r.dry_run,
        "lock": lock_json(r.lock, lockfile) if r.lock else None,
        "fetched_files": r.fetched_files,
        "fetched_bytes": r.fetched_bytes,
        "placed": r.placed,
        "removed": r.removed,
        "kept_modified": r.kept_modified,
        "kept_not_placed": r.kept_not_placed,
        "restored": r.restored,
        "replaced": r.replaced,
        "extra": r.extra,
        "warnings": r.warnings,
        "entries": [
            {"name": e.name, "version": e.artifact.version, "path": e.artifact.path,
             "keep": len(e.keep) or len(e.artifact.files) - len(e.check) - len(e.place) - len(e.blocked), "check": len(e.check), "place": len(e.place),
             "remove": [d for d, _ in e.remove]}
            for e in r.plan.entries
        ],
        "orphans": [d for d, _ in r.plan.orphans],
    }


def verify_text(reports: list[EntryReport]) -> list[str]:
    lines = []
    for r in reports:
        if r.ok:
            lines.append(f"  {style.name(r.name)}  {style.good('ok')}  ({r.path}/)")
            continue
        lines.append(f"  {style.name(r.name)}  {style.bad('differs')}  ({r.path}/)")
        if r.stale:
            lines.append(f"    {style.warn('stale')}     the lock does not pin what artifacts.yaml asks: {r.stale}")
        lines += [f"    {style.warn('missing')}   {p}" for p in r.missing]
        lines += [f"    {style.warn('modified')}  {p}" for p in r.modified]
        lines += [f"    {style.warn('extra')}     {p}" for p in r.extra]
    ok = all(r.ok for r in reports)
    if ok:
        return lines + [style.good("All files match the lock.")]
    fix = (" `wbsync sync` restores missing and modified files; it never deletes extra files it did not place.")
    if any(r.stale for r in reports):
        fix += " Stale entries: run `wbsync lock` (or restore the lockfile) and commit it."
    return lines + [style.bad("Differences found.") + fix]


def verify_json(reports: list[EntryReport]) -> dict[str, Any]:
    return {
        "ok": all(r.ok for r in reports),
        "entries": [{"name": r.name, "path": r.path, "ok": r.ok, "missing": r.missing,
                     "modified": r.modified, "extra": r.extra, "stale": r.stale} for r in reports],
    }


def outdated_text(r: OutdatedReport) -> list[str]:
    lines = [change_line(c) for c in r.moved]
    for v in r.vanished:
        lines.append(f"{style.name(v.name)}  {style.bad('vanished')}  {v.resolved} is {v.reason}. Fix: {v.fix}")
    for e in r.expiring:
        lines.append(f"{style.name(e.name)}  {style.warn('expiring')}  {e.resolved} is scheduled for deletion at "
                     f"{e.expires_at} (a TTL): move to another version before then.")
    if not lines:
        return [f"All {r.checked} entries are current: every alias still points at its locked version, "
                "and every locked version is still there."]
    if r.moved:
        lines.append("Run `wbsync lock --upgrade [NAMES]` to move the pins, then `wbsync sync`.")
    return lines


def outdated_json(r: OutdatedReport) -> dict[str, Any]:
    return {
        "checked": r.checked,
        "outdated": [change_json(c) for c in r.moved],
        "vanished": [{"name": v.name, "resolved": v.resolved, "state": v.state, "reason": v.reason,
                      "alias": v.alias, "now": v.now, "fix": v.fix} for v in r.vanished],
        "expiring": [{"name": e.name, "resolved": e.resolved, "expires_at": e.expires_at} for e in r.expiring],
    }


def outdated_porcelain(r: OutdatedReport) -> list[tuple[str, str]]:
    """(kind, entry name) pairs; names are the manifest's ([A-Za-z0-9][A-Za-z0-9._-]*), safe in a shell loop."""
    return ([("moved", c.name) for c in r.moved] + [("vanished", v.name) for v in r.vanished]
            + [("expiring", e.name) for e in r.expiring])


def nothing_follows(manifest: str, collection: str, alias: str) -> str:
    """Said when a filter (from a webhook's payload, say) selects no entry; the values are untrusted,
    so they are shown quoted and escaped, never at the start of a line (no CI log command)."""
    wanted = " and ".join(f"{what} {value!r}" for what, value in (("collection", collection), ("alias", alias))
                          if value)
    return f"No entry of {manifest} follows {wanted}: nothing to check."


def add_text(r: AddResult, lockfile: str) -> list[str]:
    e = r.entry
    verb = "Created" if r.created else "Updated"
    return ([f"{verb} {r.manifest}: added {style.name(e.name)}  {e.artifact}  -> {e.path}/"]
            + lock_text(r.lock, lockfile)
            + [f"Run `wbsync sync {e.name}` to fetch its files."])


def add_json(r: AddResult, lockfile: str) -> dict[str, Any]:
    return {"manifest": r.manifest, "created": r.created, "name": r.entry.name, "entry": r.entry.as_json(),
            "lock": lock_json(r.lock, lockfile)}
