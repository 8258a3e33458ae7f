"""`wbsync add`: put one entry into artifacts.yaml as text, so every other byte stays as it was.

Why text and not a YAML round trip: PyYAML drops comments, and ruamel.yaml (which keeps most of
them) would be one more dependency and still re-flows some lines. The new entry is a small
block appended at the end of the ``artifacts:`` mapping, in the indentation, entry style and
line endings the file already uses. The result is parsed again with the real loader and must
hold exactly the old entries plus the new one before anything is written; the write is atomic,
and if locking the new entry fails the manifest is put back as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from wbsync.core.atomic import write_atomic
from wbsync.core.errors import LocalIOError, ManifestError, UsageError
from wbsync.core.models import Entry, Manifest
from wbsync.core.paths import normalize_path
from wbsync.core.references import parse_reference
from wbsync.repo.manifest import parse_manifest
from wbsync.repo.projectfile import read_project_file

if TYPE_CHECKING:
    from wbsync.repo.project import Project

# The manifest's rule for entry names (wbsync/repo/manifest.py); the re-parse enforces it too.
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@+:-]*(?: [A-Za-z0-9_./@+:-]+)*")  # no ": ", " #", [ ] { } ,
_FLOW_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")  # inside {...}: no ':' at all (PyYAML is strict)
_BOM = "\ufeff"


@dataclass(frozen=True)
class NewEntry:
    """The entry `wbsync add` writes, its values checked."""

    name: str
    artifact: str
    path: str  # normalized
    type: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def fields(self, flow: bool) -> list[tuple[str, str]]:
        """(key, YAML text of the value), in the order the example manifest uses."""
        out = [("artifact", _scalar(self.artifact, flow)), ("path", _scalar(self.path, flow))]
        if self.type:
            out.append(("type", _scalar(self.type, flow)))
        for key, globs in (("include", self.include), ("exclude", self.exclude)):
            if globs:
                out.append((key, "[" + ", ".join(_quote(g) for g in globs) + "]"))
        return out

    def as_json(self) -> dict[str, object]:
        return {"artifact": self.artifact, "path": self.path, "type": self.type,
                "include": list(self.include), "exclude": list(self.exclude)}


def new_entry(reference: str, path: str, name: str | None = None, type: str | None = None,
              include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> NewEntry:
    """Check the command line's values; raise UsageError (exit 2) with the fix."""
    try:
        ref = parse_reference(reference)
    except ValueError as error:
        raise UsageError(f"REFERENCE: {error}") from None
    try:
        folder = normalize_path(path)
    except ValueError as error:
        raise UsageError(f"--path: {error}") from None
    if name is None:
        name = default_name(ref.collection)
    elif not ENTRY_NAME.fullmatch(name):
        raise UsageError(f"--name: {name!r} is not a valid entry name: use letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit.")
    if type is not None and (not type or "/" in type or ":" in type):
        raise UsageError(f"--type: {type!r} is not an artifact type (e.g. model or dataset): types are "
                         "not empty and contain no '/' or ':'.")
    return NewEntry(name, reference, folder, type, tuple(include), tuple(exclude))


def default_name(collection: str) -> str:
    """The collection's name as an entry name ``[A-Za-z0-9][A-Za-z0-9._-]*``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", collection).lstrip("._-") or "artifact"


@dataclass(frozen=True)
class Written:
    """An entry written into a manifest, with what to put back (``undo``)."""

    path: Path  # the real file, through a symlink
    before: str | None  # None: the manifest did not exist
    after: str


def write_entry(project: Project, entry: NewEntry) -> Written:
    """Write ``entry`` into the project's manifest (a new one if there is none), every other byte
    as it was."""
    target = Path(os.path.realpath(project.manifest_path))  # through a symlink, not over it
    before = _read(target, str(project.manifest_path))
    after = add_entry(before, entry, str(project.manifest_path), str(target.parent))
    _write(target, after, before)
    return Written(target, before, after)


def undo(written: Written) -> str:
    """Put the manifest back unless someone changed it since; a sentence saying what happened."""
    return _restore(written.path, written.after, written.before)


def add_entry(text: str | None, entry: NewEntry, file: str, root: str) -> str:
    """``text`` (None: no manifest yet) with ``entry`` appended to ``artifacts:``; checked by re-parsing."""
    if text is None:
        return _checked(_fresh(entry, Path(file).name), {}, entry, file, root)
    bom, body = (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)
    old = _old_entries(body, file, root)
    _refuse_clashes(old, entry, file)
    return bom + _checked(_insert(body, entry), old.entries if old else {}, entry, file, root)


def _old_entries(text: str, file: str, root: str) -> Manifest | None:
    """The manifest as it is, or None when it is valid but for having no entries yet."""
    try:
        return parse_manifest(text, file, root)
    except ManifestError:
        artifacts = _artifacts_node(text)
        if artifacts is not None and not _is_empty(artifacts[1]):
            raise
        return None  # artifacts: missing or empty; the re-parse after the edit checks the rest


def _refuse_clashes(old: Manifest | None, entry: NewEntry, file: str) -> None:
    if old is None:
        return
    if entry.name in old.entries:
        other = old.entries[entry.name]
        raise UsageError(f"{file}:{other.line}: an entry named {entry.name!r} already exists "
                         f"({other.reference} -> {other.path}/): choose another name with --name, or "
                         "edit that entry and run `wbsync lock`.")
    for other in old.entries.values():
        a, b = entry.path.casefold(), other.path.casefold()  # case-blind, as macOS and Windows are
        if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
            raise UsageError(f"{file}:{other.line}: --path {entry.path!r} overlaps {other.path!r}, the "
                             f"path of entry {other.name!r}: give each entry a folder of its own, "
                             "outside the others.")


def _checked(text: str, old: dict[str, Entry], entry: NewEntry, file: str, root: str) -> str:
    """``text`` if it parses to the old entries plus ``entry`` and nothing else."""
    manifest = parse_manifest(text, file, root)
    new = manifest.entries.get(entry.name)
    same_old = all(dataclasses.replace(manifest.entries[n], line=0) == dataclasses.replace(e, line=0)
                   for n, e in old.items() if n in manifest.entries)
    expected = parse_reference(entry.artifact)
    if (set(manifest.entries) != set(old) | {entry.name} or not same_old or new is None
            or (new.reference.registry, new.reference.collection, new.reference.selector)
            != (expected.registry, expected.collection, expected.selector)
            or (new.path, new.type, new.include, new.exclude) != (entry.path, entry.type, entry.include, entry.exclude)):
        error = UsageError(f"{file}: could not add the entry without changing what the file means, so it was "
                           f"left as it was. Add it by hand under artifacts:\n{_block(entry, '  ', '    ', chr(10))}")
        error.laid_out = True  # a YAML block: its values are quoted, newlines included
        raise error
    return text


def _insert(text: str, entry: NewEntry) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    found = _artifacts_node(text)
    if found is None:  # no artifacts: key yet (or not a mapping at the top: the re-parse says so)
        step = _indent_step(text)
        sep = "" if not text or text.endswith("\n") else newline
        return f"{text}{sep}artifacts:{newline}" + _block(entry, " " * step, " " * 2 * step, newline)
    key, value = found
    if isinstance(value, yaml.MappingNode) and value.flow_style and value.value:
        last = value.value[-1][1].end_mark.index  # after the last value: `{a: {...}, new: {...}}`
        return text[:last] + ", " + _flow_entry(entry) + text[last:]
    if _is_empty(value) and value.end_mark.index > value.start_mark.index:  # `{}`, `~`, `null`, `""`
        if value.start_mark.line != value.end_mark.line:
            raise UsageError(f"line {key.start_mark.line + 1}: write `artifacts:` on a line of its own, "
                             "then run `wbsync add` again.")
        start = len(text[:value.start_mark.index].rstrip(" \t"))
        text = text[:start] + text[value.end_mark.index:]
    return _append_block(text, key, value, entry, newline)


def _append_block(text: str, key: yaml.Node, value: yaml.Node, entry: NewEntry, newline: str) -> str:
    """After the last line of the block under ``key``, in the style of its entries."""
    lines = text.splitlines(keepends=True)
    end = _block_end(lines, key.start_mark.line, key.start_mark.column)
    if isinstance(value, yaml.MappingNode) and value.value:
        first_key, _ = value.value[0]
        last_key, last_value = value.value[-1]
        indent = " " * first_key.start_mark.column
        if isinstance(last_value, yaml.MappingNode) and last_value.flow_style:
            block = f"{indent}{_key(entry.name)}: {_flow_entry(entry, name=False)}{newline}"
        else:
            inner = _inner_indent(last_value, first_key.start_mark.column)
            block = _block(entry, indent, inner, newline)
        block = (newline if _blank_before(lines, last_key.start_mark.line, key.start_mark.line) else "") + block
    else:
        step = _indent_step(text)
        block = _block(entry, " " * (key.start_mark.column + step), " " * (key.start_mark.column + 2 * step), newline)
    head = "".join(lines[: end + 1])
    if head and not head.endswith("\n"):
        head += newline
    return head + block + "".join(lines[end + 1 :])


def _blank_before(lines: list[str], line: int, stop: int) -> bool:
    """Is the entry at ``line`` (with its comments above) set off by a blank line? Then so is ours."""
    line -= 1
    while line > stop and lines[line].strip().startswith("#"):
        line -= 1
    return line > stop and not lines[line].strip()


def _block_end(lines: list[str], key_line: int, key_column: int) -> int:
    """The last line indented under the key (entries, and comments between or after them)."""
    end = key_line
    for i in range(key_line + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped:
            continue
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        if indent > key_column:
            end = i
        elif not stripped.startswith("#"):  # the next top-level key (a comment there may still be ours)
            break
    return end


def _inner_indent(value: yaml.Node, entry_column: int) -> str:
    if isinstance(value, yaml.MappingNode) and value.value:
        return " " * value.value[0][0].start_mark.column
    return " " * (entry_column + 2)


def _indent_step(text: str) -> int:
    """How far the file indents a nested block mapping (2 when it has none)."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and line != stripped and not stripped.startswith("#"):
            return len(line) - len(stripped)
    return 2


def _block(entry: NewEntry, indent: str, inner: str, newline: str) -> str:
    lines = [f"{indent}{_key(entry.name)}:"] + [f"{inner}{k}: {v}" for k, v in entry.fields(flow=False)]
    return newline.join(lines) + newline


def _flow_entry(entry: NewEntry, name: bool = True) -> str:
    body = "{" + ", ".join(f"{k}: {v}" for k, v in entry.fields(flow=True)) + "}"
    return f"{_key(entry.name)}: {body}" if name else body


def _fresh(entry: NewEntry, file_name: str) -> str:
    return (f"# {file_name}: the W&B Registry artifacts this repository needs, and where each one goes.\n"
            "# `wbsync add REFERENCE --path DIR` adds an entry, `wbsync lock` pins it, `wbsync sync`\n"
            "# fetches the locked files. Every field: wbsync's README, and the JSON Schema the package\n"
            "# ships (wbsync/schema/manifest.schema.json).\n"
            "version: 1\n\nartifacts:\n" + _block(entry, "  ", "    ", "\n"))


def _artifacts_node(text: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The ``artifacts`` key and value nodes of the top mapping, if there are some."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    return next(((k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "artifacts"), None)


def _is_empty(node: yaml.Node) -> bool:
    """No entries yet: nothing, ``~``, ``null``, ``""`` or ``{}``."""
    if isinstance(node, yaml.MappingNode):
        return not node.value
    return isinstance(node, yaml.ScalarNode) and (node.tag.endswith(":null") or node.value == "")


def _key(name: str) -> str:
    return name if _is_plain(name, _FLOW_PLAIN) else _quote(name)


def _scalar(value: str, flow: bool) -> str:
    return value if _is_plain(value, _FLOW_PLAIN if flow else _PLAIN) else _quote(value)


def _is_plain(value: str, pattern: re.Pattern[str]) -> bool:
    """True when YAML reads ``value`` unquoted as exactly this string (not a number, date, true...)."""
    if not pattern.fullmatch(value):
        return False
    try:
        return yaml.safe_load(value) == value
    except yaml.YAMLError:
        return False


def _quote(value: str) -> str:
    """A JSON string is a YAML double-quoted scalar; escape the line breaks JSON leaves raw."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\x85", "\\x85").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _read(path: Path, shown: str) -> str | None:
    try:
        return read_project_file(path, ManifestError, "manifest").decode("utf-8")  # the rule every reader keeps
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ManifestError(f"{shown}: not UTF-8 text: save the manifest as UTF-8.") from None
    except OSError as error:
        raise ManifestError(f"{shown}: cannot read the manifest: {error.strerror}.") from None


def _write(path: Path, text: str, before: str | None) -> None:
    mode = path.stat().st_mode & 0o7777 if before is not None else None
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as error:  # the atomic write's temp file is ours, not a name the user knows
        what = "update" if before is not None else "create"
        raise LocalIOError(f"cannot {what} {path.name} in {path.parent}: {error.strerror or error}. Nothing was "
                           f"written. Run `wbsync add` in a folder you can write (check its permissions, or "
                           "whether it is on a read-only filesystem), then run again.") from None
    if mode is not None:
        os.chmod(path, mode)  # write_atomic's new file got the umask's mode


def _restore(path: Path, written: str, before: str | None) -> str:
    """Undo our write unless someone changed the file since; say what happened, for the message."""
    name = path.name
    if _read(path, str(path)) != written:
        return f"{name} changed meanwhile, so wbsync left it as it is now."
    if before is None:
        path.unlink()
        return f"{name} was not created."
    _write(path, before, before)
    return f"{name} was left as it was: the entry was not added."
