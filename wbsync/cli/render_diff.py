"""`wbsync diff` for people (text), machines (JSON) and pull requests (Markdown).

Everything shown that comes from a lock (names, paths, references, versions, file names) is
untrusted: a lock in a pull request is written by whoever opened it. In text, control and
invisible format characters (terminal escapes, right-to-left overrides, zero-width spaces) are
shown escaped; in Markdown, additionally, every character that Markdown or HTML could read as
syntax is escaped, so no file name can end a table row, open an HTML comment or a <details>
block, start a heading or link, or mention someone, and the warnings, which come first, stay
visible.
"""

from __future__ import annotations

import re
from typing import Any

from wbsync.cli import style
from wbsync.core.models import FileRecord, LockedArtifact
from wbsync.core.shown import printable
from wbsync.core.text import human_size
from wbsync.repo.lockdiff import EntryDiff, FileChanges, LockDiff

TEXT_FILES = 20  # per kind and entry in text, unless -v
MD_FILES = 25  # per kind and entry in Markdown
MD_LIMIT = 60_000  # characters: GitHub refuses pull-request bodies over 65,536


def plain(text: str) -> str:
    """``text`` under the one escaping rule of every channel (wbsync.core.shown.printable)."""
    return printable(text)


_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "`": "&#96;",
                '"': "&quot;", "'": "&#39;"}
# GitHub decodes entities and backslash escapes before its mention (@user) and reference (#12,
# org/repo#12) filters run, so "&#64;" and "\#" still mention and link. Those filters skip code
# spans: "@" and "#" become one-character spans, which cuts the pattern. Names and paths from
# others go whole into code spans (md_code); md() is for wbsync's sentences that quote them.
_MD_UNLINKED = {"@": "`@`", "#": "`#`"}
_MD_BACKSLASHED = set("\\*_[](){}+-.!~=:^$%")


def md(text: str) -> str:
    """Inert Markdown: ``text`` shows as itself, on one line, inside a table cell or a list."""
    out = []
    for ch in plain(text):
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_UNLINKED:
            out.append(_MD_UNLINKED[ch])
        elif ch in _MD_BACKSLASHED:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def md_code(text: str, in_table: bool = False) -> str:
    """A name or path from others as a Markdown code span: shown as itself (escaped by the one
    rule first), never a mention, a reference, a link or markup. CommonMark: the fence is a run
    of backticks longer than the longest run inside; a space pads content that starts or ends
    with a backtick (or with a space at both ends, which the span would strip). In a GFM table
    cell (``in_table``) a "|" ends the cell even inside a span, so it is written "\\|" (GitHub
    shows "|")."""
    body = printable(text).replace("|", "\\|") if in_table else printable(text)
    if not body:
        return md(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body[0] == "`" or body[-1] == "`" or (body[0] == body[-1] == " " and body.strip()) else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def signed_size(n: int) -> str:
    return ("+" if n >= 0 else "") + human_size(n)


def verb(e: EntryDiff) -> str:
    if e.status in ("added", "removed", "unchanged"):
        return e.status
    assert e.old is not None and e.new is not None
    if e.old.version != e.new.version or e.old.resolved != e.new.resolved:
        return "moved"
    return "content changed" if e.old.digest != e.new.digest else "changed"


def versions(e: EntryDiff) -> str:
    if e.old and e.new:
        return e.new.version if e.old.version == e.new.version else f"{e.old.version} -> {e.new.version}"
    return (e.new or e.old).version if (e.new or e.old) else ""  # type: ignore[union-attr]


def counts(f: FileChanges) -> str:
    return f"+{len(f.added)} files, -{len(f.removed)}, {len(f.changed)} changed"


# -- text -----------------------------------------------------------------------------------


def diff_text(d: LockDiff, lockfile: str, base: str, verbose: bool) -> list[str]:
    head = f"{plain(lockfile)} against {plain(base)}:"
    if not d.differs:
        return [f"{head} no differences ({len(d.entries)} entries)."]
    lines = [head]
    for name, alert in d.alerts:
        lines.append(f"  {style.bad('WARNING')} {style.name(plain(name))}: {plain(alert.message)}")
    for e in d.changed:
        lines += _entry_text(e, verbose)
    lines.append(f"{len(d.changed)} of {len(d.entries)} entries differ.")
    return lines


def _entry_text(e: EntryDiff, verbose: bool) -> list[str]:
    name = style.name(plain(e.name))
    if e.status == "added":
        assert e.new is not None
        return [f"  {name}  {style.good('added')}  {plain(e.new.version)}  -> {plain(e.new.path)}/  "
                f"({len(e.files.added)} files, {human_size(e.files.bytes_delta)})"]
    if e.status == "removed":
        assert e.old is not None
        return [f"  {name}  {style.warn('removed')}  (was {plain(e.old.version)} at {plain(e.old.path)}/, "
                f"{len(e.files.removed)} files)"]
    lines = [f"  {name}  {verb(e)}  {style.version(plain(versions(e)))}  "
             f"({counts(e.files)}, {signed_size(e.files.bytes_delta)})"]
    lines += [f"    {plain(n)}" for n in e.notes]
    limit = None if verbose else TEXT_FILES
    lines += _listed("+", e.files.added, limit, lambda f: f"{plain(f.path)} ({human_size(f.size)})")
    lines += _listed("-", e.files.removed, limit, lambda f: f"{plain(f.path)} ({human_size(f.size)})")
    lines += _listed("~", e.files.changed, limit,
                     lambda p: f"{plain(p[1].path)} ({human_size(p[0].size)} -> {human_size(p[1].size)})")
    return lines


def _listed(mark: str, items: tuple[Any, ...], limit: int | None, show: Any) -> list[str]:
    shown = items if limit is None else items[:limit]
    lines = [f"    {mark} {show(item)}" for item in shown]
    if len(items) > len(shown):
        lines.append(f"    {mark} ... and {len(items) - len(shown)} more (-v or --json lists them all)")
    return lines


# -- JSON -----------------------------------------------------------------------------------


def diff_json(d: LockDiff, lockfile: str, base: str) -> dict[str, Any]:
    return {
        "lockfile": lockfile,
        "base": base,
        "differs": d.differs,
        "alerts": [{"name": n, "kind": a.kind, "message": a.message} for n, a in d.alerts],
        "entries": [_entry_json(e) for e in d.changed],
    }


def _entry_json(e: EntryDiff) -> dict[str, Any]:
    return {
        "name": e.name,
        "status": e.status,
        "change": verb(e),
        "old": _pin_json(e.old),
        "new": _pin_json(e.new),
        "files_added": [_file_json(f) for f in e.files.added],
        "files_removed": [_file_json(f) for f in e.files.removed],
        "files_changed": [{"path": new.path, "old_size": old.size, "new_size": new.size}
                          for old, new in e.files.changed],
        "bytes_delta": e.files.bytes_delta,
        "alerts": [{"kind": a.kind, "message": a.message} for a in e.alerts],
        "notes": list(e.notes),
    }


def _pin_json(a: LockedArtifact | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"version": a.version, "resolved": a.resolved, "requested": a.requested, "path": a.path,
            "type": a.type, "digest": a.digest, "files": len(a.files), "bytes": a.size}


def _file_json(f: FileRecord) -> dict[str, Any]:
    return {"path": f.path, "size": f.size}


# -- Markdown -------------------------------------------------------------------------------


def diff_markdown(d: LockDiff, lockfile: str, base: str) -> str:
    """A pull-request body or CI job summary; warnings first, file lists last (and cut first)."""
    text = _markdown(d, lockfile, base, MD_FILES)
    if len(text) > MD_LIMIT:  # too long for a pull request: keep the warnings and the table
        text = _markdown(d, lockfile, base, 0)
    return text


def _markdown(d: LockDiff, lockfile: str, base: str, per_kind: int) -> str:
    out = [f"### wbsync: {md_code(lockfile)} against {md_code(base)}", ""]
    if not d.differs:
        return "\n".join(out + [f"No differences ({len(d.entries)} entries).", ""])
    if d.alerts:
        out += ["> [!CAUTION]", "> **Check these before merging:**"]
        out += [f"> - {md_code(name)}: {md(alert.message)}" for name, alert in d.alerts]
        out.append("")
    out += ["| entry | change | version | files | size |", "| --- | --- | --- | --- | --- |"]
    for e in d.changed:
        size = signed_size(e.files.bytes_delta)
        out.append(f"| {md_code(e.name, True)} | {verb(e)} | {md_code(versions(e), True)} | {md(counts(e.files))} "
                   f"| {md(size)} |")
    out.append("")
    for e in d.changed:
        out += _md_details(e, per_kind)
    if per_kind == 0 and any(e.files.any for e in d.changed):
        out += ["File lists left out to fit a pull request; `wbsync diff` or `wbsync diff --json` shows them.", ""]
    return "\n".join(out)


def _md_details(e: EntryDiff, per_kind: int) -> list[str]:
    pin = e.new or e.old
    assert pin is not None
    lines = [f"- {md_code(e.name)}: {md_code(pin.resolved)} -> {md_code(pin.path + '/')}"]
    if e.old and e.new and e.old.resolved != e.new.resolved:
        lines[0] = (f"- {md_code(e.name)}: {md_code(e.old.resolved)} -> {md_code(e.new.resolved)}, "
                    f"at {md_code(e.new.path + '/')}")
    lines += [f"  - {md(n)}" for n in e.notes]
    if per_kind == 0 or not e.files.any:
        return lines + [""]
    lines += ["", "  <details><summary>files</summary>", ""]
    lines += _md_listed("added", e.files.added, per_kind, lambda f: f"{md_code(f.path)} ({md(human_size(f.size))})")
    lines += _md_listed("removed", e.files.removed, per_kind,
                        lambda f: f"{md_code(f.path)} ({md(human_size(f.size))})")
    lines += _md_listed("changed", e.files.changed, per_kind,
                        lambda p: f"{md_code(p[1].path)} ({md(human_size(p[0].size))} \\-> {md(human_size(p[1].size))})")
    return lines + ["", "  </details>", ""]


def _md_listed(kind: str, items: tuple[Any, ...], per_kind: int, show: Any) -> list[str]:
    lines = [f"  - {kind}: {show(item)}" for item in items[:per_kind]]
    if len(items) > per_kind:
        lines.append(f"  - {kind}: and {len(items) - per_kind} more")
    return lines
