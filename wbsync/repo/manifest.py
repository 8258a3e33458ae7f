"""Load artifacts.yaml into a Manifest: YAML nodes -> checked fields -> references, defaults, paths.

Every problem is one ManifestError of one paragraph: ``FILE:LINE: FIELD: what is wrong. The fix.``
We read PyYAML's node tree rather than plain data so that each message can name its line, see
duplicate keys (PyYAML's loader silently keeps the last) and tell a quoted "on" from a boolean.

The checks implement schema/manifest.schema.json, the published contract that editors and CI
use. They are written out here instead of running jsonschema because importing it costs about
90 ms, which a no-op sync must not pay; tests/test_manifest.py runs its examples through both
and checks that they agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import yaml

from wbsync.core import references
from wbsync.core.errors import ManifestError
from wbsync.core.models import Entry, Manifest, Reference
from wbsync.core.paths import normalize_path
from wbsync.core.safeio import excerpt
from wbsync.repo.projectfile import read_project_file

MANIFEST_VERSION = 1
_TOP_KEYS = ("version", "source", "defaults", "artifacts")
_MANIFEST_START = re.compile(r"^(version|artifacts)\s*:", re.M)
_OWNER_KEYS = ("org", "entity")
_PART_KEYS = ("registry", "collection", "alias", "version")
_LIST_KEYS = ("include", "exclude")
_STRING_KEYS = ("artifact", *_PART_KEYS, *_OWNER_KEYS, "path", "type")
_ENTRY_KEYS = (*_STRING_KEYS, *_LIST_KEYS)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXAMPLE = "phi3: {artifact: wandb-registry-model/phi3, path: models/phi3}"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
_TAG = "tag:yaml.org,2002:"
# What YAML makes of an unquoted scalar, and why: the traps behind "expected a string".
_KINDS = {
    "str": ("a string", ""),
    "bool": ("a boolean", "YAML reads unquoted yes/no/on/off/true/false as booleans"),
    "int": ("a number", "YAML reads unquoted digits as numbers"),
    "float": ("a number", "YAML reads unquoted digits as numbers, so 1.10 becomes 1.1"),
    "timestamp": ("a date", "YAML reads unquoted dates as dates"),
    "null": ("nothing", "YAML reads ~ and null as nothing"),
}

_T = TypeVar("_T")
_Pairs = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node), in file order


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read, check and normalize the manifest at ``path``; raise ManifestError if it is invalid."""
    file = os.fspath(path)
    try:
        text = read_project_file(file, ManifestError, "manifest").decode("utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(
            f"no {Path(file).name} found at {os.path.abspath(file)}. Start one with `wbsync add "
            "REFERENCE --path DIR` (it writes the file and locks the entry), or write version: 1, then "
            f"artifacts: with entries such as {_EXAMPLE}; or pass -m PATH to use another manifest."
        ) from None
    except UnicodeDecodeError:
        raise ManifestError(f"{file}: not UTF-8 text: save the manifest as UTF-8.") from None
    except OSError as error:
        raise ManifestError(f"{file}: cannot read the manifest: {error.strerror}.") from None
    return parse_manifest(text, file, os.path.dirname(os.path.abspath(file)))


def parse_manifest(text: str, file: str, root: str) -> Manifest:
    """Check manifest ``text``; ``file`` names it in messages, ``root`` is its absolute folder."""
    reader = _Reader(file)
    node = reader.compose(text)
    if node is None:
        reader.fail(None, "", f"the file is empty: a manifest needs version: 1 and artifacts:, "
                    f"e.g. {_EXAMPLE}.")
    top = reader.mapping(node, "", "a mapping with version and artifacts")
    _check_version(reader, node, top)  # before the keys: a newer format may have added some
    reader.known_keys(top, "", _TOP_KEYS, "Artifact entries go under artifacts:.")
    values = reader.strings_in(top, ("source",), "")
    defaults = _defaults(reader, top)
    entries, path_nodes = _entries(reader, node, top, defaults)
    _check_overlaps(reader, entries, path_nodes)
    return Manifest(file=file, root=root, entries=entries, source=values.get("source"))


class _Reader:
    """Reads YAML nodes into checked values; every failure names the file, the line and the field."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, node: yaml.Node | None, field: str, message: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        where = f"{excerpt(field, 120)}: " if field else ""  # field names come from the file: keep them short
        raise ManifestError(f"{self.file}:{line}: {where}{message}")

    def compose(self, text: str) -> yaml.Node | None:
        try:
            return yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark else 1
            lines = text.splitlines()
            source = lines[line - 1] if line <= len(lines) else ""
            above = next((t for t in reversed(lines[: line - 1]) if t.strip() and not t.lstrip().startswith("#")), "")
            # The offending line is quoted only from a file that reads as a manifest so far: a
            # manifest symlinked to (or replaced by) an INI or .env file must not print its secrets.
            shown = f" at `{excerpt(source.strip())}`" if _MANIFEST_START.search("\n".join(lines[:line])) else ""
            raise ManifestError(f"{self.file}:{line}: invalid YAML{shown}: "
                                f"{_yaml_problem(error, source, above)}") from None
        except yaml.YAMLError as error:  # e.g. a control character: no line to point at
            raise ManifestError(f"{self.file}:1: invalid YAML: {excerpt(str(error), 200)}.") from None

    def mapping(self, node: yaml.Node, field: str, what: str, at: yaml.Node | None = None) -> _Pairs:
        """The mapping's string keys, each at most once; ``at`` is where a non-mapping is reported."""
        if not isinstance(node, yaml.MappingNode):
            kind = _kind(node)[0]
            fix = " Indent its keys under it, or remove it." if kind == "nothing" else ""
            self.fail(at or node, field, f"expected {what}, got {kind}.{fix}")
        pairs: _Pairs = {}
        for key_node, value_node in node.value:
            raw = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if key_node.tag == _TAG + "merge":  # merged keys would hide which line set a value
                self.fail(key_node, _join(field, raw), "YAML merge keys are not supported: write "
                          "the keys out (org and entity can go under defaults:).")
            key = self.text(key_node, _join(field, raw), "{}")
            if key in pairs:
                lines = f"lines {pairs[key][0].start_mark.line + 1} and {key_node.start_mark.line + 1}"
                self.fail(key_node, _join(field, key), f"appears twice ({lines}), and YAML would "
                          "silently keep only the last one: remove one of them.")
            pairs[key] = (key_node, value_node)
        return pairs

    def known_keys(self, pairs: _Pairs, field: str, allowed: tuple[str, ...], hint: str = "") -> None:
        for key, (key_node, _) in pairs.items():
            if key not in allowed:
                import difflib  # only on this error path

                close = difflib.get_close_matches(key, allowed, n=1)
                guess = f" Did you mean {close[0]}?" if close else f" {hint}" if hint else ""
                self.fail(key_node, _join(field, key), f"unknown key.{guess} The keys allowed "
                          f"here are: {', '.join(allowed)}.")

    def strings_in(self, pairs: _Pairs, keys: tuple[str, ...], field: str) -> dict[str, str]:
        """The values of those ``keys`` present in ``pairs``, each a non-empty string."""
        return {key: self.text(pairs[key][1], _join(field, key), f"{key}: {{}}", at=pairs[key][0])
                for key in pairs if key in keys}

    def text(self, node: yaml.Node, field: str, quote: str, at: yaml.Node | None = None) -> str:
        """A non-empty string; ``quote`` shows the fix, with the quoted value in place of {}."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            if node.value:
                return str(node.value)
            self.fail(at or node, field, "is empty: give a value or remove it.")
        kind, why = _kind(node)
        if isinstance(node, yaml.ScalarNode) and node.value:
            fix = quote.format(json.dumps(node.value if len(node.value) <= 120 else excerpt(node.value, 120), ensure_ascii=False))
            self.fail(at or node, field, f"expected a string, got {kind} ({why}). Quote it: {fix}.")
        if kind == "nothing":
            self.fail(at or node, field, "has no value: give one or remove it.")
        self.fail(at or node, field, f"expected a string, got {kind}.")

    def globs(self, pairs: _Pairs, key: str, field: str) -> tuple[str, ...]:
        if key not in pairs:
            return ()
        key_node, node = pairs[key]
        field = _join(field, key)
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            self.fail(key_node, field, f"expected a list, got a string: write "
                      f"{key}: [{json.dumps(node.value)}].")
        if not isinstance(node, yaml.SequenceNode):
            self.fail(key_node, field, f"expected a list of globs, got {_kind(node)[0]}.")
        if key == "include" and not node.value:
            self.fail(key_node, field, "is empty, so no file would be synced: remove include to "
                      "keep every file.")
        return tuple(self.text(item, f"{field}[{i}]", "{}") for i, item in enumerate(node.value))

    def checked(self, pairs: _Pairs, key: str, field: str, value: str,
                check: Callable[[str], _T]) -> _T:
        """``check(value)``, its ValueError reported at ``key``."""
        try:
            return check(value)
        except ValueError as error:
            self.fail(pairs[key][0], _join(field, key), str(error))


def _check_version(reader: _Reader, node: yaml.Node, top: _Pairs) -> None:
    if "version" not in top:
        reader.fail(node, "version", "missing: add version: 1 at the top of the file.")
    key_node, value = top["version"]
    if isinstance(value, yaml.ScalarNode) and value.tag == _TAG + "int":
        number = yaml.constructor.SafeConstructor().construct_yaml_int(value)
        if number == MANIFEST_VERSION:
            return
        reader.fail(key_node, "version", f"this file is manifest version {number}, and this "
                    f"wbsync reads manifest version {MANIFEST_VERSION}: upgrade wbsync.")
    got = _kind(value)[0] + (f" '{excerpt(value.value)}'" if isinstance(value, yaml.ScalarNode) and value.value else "")
    reader.fail(key_node, "version", f"expected the number {MANIFEST_VERSION}, got {got}: write "
                f"version: {MANIFEST_VERSION}.")


def _defaults(reader: _Reader, top: _Pairs) -> dict[str, str]:
    if "defaults" not in top:
        return {}
    key_node, node = top["defaults"]
    pairs = reader.mapping(node, "defaults", "a mapping with org and/or entity", at=key_node)
    reader.known_keys(pairs, "defaults", _OWNER_KEYS)
    return _owner(reader, pairs, "defaults", reader.strings_in(pairs, _OWNER_KEYS, "defaults"))


def _owner(reader: _Reader, pairs: _Pairs, field: str, values: dict[str, str]) -> dict[str, str]:
    """The org and entity among ``values``, checked."""
    checks = {"org": references.check_org, "entity": references.check_entity}
    return {key: reader.checked(pairs, key, field, values[key], check)
            for key, check in checks.items() if key in values}


def _entries(reader: _Reader, root: yaml.Node, top: _Pairs,
             defaults: dict[str, str]) -> tuple[dict[str, Entry], dict[str, yaml.Node]]:
    """The entries by name, and the node of each entry's path (for messages about overlaps)."""
    if "artifacts" not in top:
        reader.fail(root, "artifacts", f"missing: say what to sync under artifacts:, e.g. {_EXAMPLE}.")
    key_node, node = top["artifacts"]
    if not node.value:  # nothing, "", [] or {}
        reader.fail(key_node, "artifacts", f"has no entries: add at least one, e.g. {_EXAMPLE}.")
    pairs = reader.mapping(node, "artifacts", "a mapping from entry names to entries", at=key_node)
    entries: dict[str, Entry] = {}
    path_nodes: dict[str, yaml.Node] = {}
    for name, (name_node, entry_node) in pairs.items():
        if not _NAME.fullmatch(name):
            reader.fail(name_node, f"artifacts.{name}", "is not a valid entry name: use letters, "
                        "digits, '.', '_' and '-', starting with a letter or digit.")
        entries[name], path_nodes[name] = _entry(reader, name, name_node, entry_node, defaults)
    return entries, path_nodes


def _entry(reader: _Reader, name: str, name_node: yaml.Node, node: yaml.Node,
           defaults: dict[str, str]) -> tuple[Entry, yaml.Node]:
    field = f"artifacts.{name}"
    pairs = reader.mapping(node, field, "a mapping with artifact and path, e.g. "
                           f"{_EXAMPLE.partition(': ')[2]}", at=name_node)
    reader.known_keys(pairs, field, _ENTRY_KEYS)
    version = pairs.get("version", (None, None))[1]
    if version is not None and version.tag == _TAG + "int":
        reader.fail(pairs["version"][0], f"{field}.version", "expected a string, got a number: "
                    f"versions are 'v' and a number, write version: v{version.value}.")
    values = reader.strings_in(pairs, _STRING_KEYS, field)
    include, exclude = (reader.globs(pairs, key, field) for key in _LIST_KEYS)
    owner = {**defaults, **_owner(reader, pairs, field, values)}
    reference = _reference(reader, field, name_node, pairs, values, owner.get("org"))
    if "path" not in values:
        reader.fail(name_node, field, "missing path: the folder the files go to, relative to the "
                    "manifest's folder, e.g. path: models/phi3.")
    path = reader.checked(pairs, "path", field, values["path"], normalize_path)
    kind = values.get("type")
    if kind is not None and ("/" in kind or ":" in kind):
        reader.fail(pairs["type"][0], f"{field}.type", f"{kind!r} is not an artifact type: "
                    "types cannot contain '/' or ':'.")
    entry = Entry(name=name, reference=reference, path=path, type=kind, include=include,
                  exclude=exclude, entity=owner.get("entity"), line=name_node.start_mark.line + 1)
    return entry, pairs["path"][0]


def _reference(reader: _Reader, field: str, at: yaml.Node, pairs: _Pairs,
               values: dict[str, str], org: str | None) -> Reference:
    """From ``artifact`` or from the parts. An org in the full name beats the defaults' org."""
    parts = [key for key in _PART_KEYS if key in pairs]
    if "artifact" in values:
        if parts:
            reader.fail(pairs[parts[0]][0], f"{field}.{parts[0]}", "give the artifact either as "
                        "artifact (its full name) or as registry, collection and alias or "
                        "version, not both: remove one.")
        ref = reader.checked(pairs, "artifact", field, values["artifact"],
                             references.parse_reference)
        if "org" in values and ref.org not in (None, values["org"]):
            reader.fail(pairs["org"][0], f"{field}.org", f"is {values['org']!r}, but the artifact "
                        f"name says org {ref.org!r}: keep one of them.")
        return ref if ref.org else dataclasses.replace(ref, org=org)
    if not parts:
        reader.fail(at, field, f"names no artifact: add artifact: {references.EXPECTED_FORM}, or "
                    "registry, collection and alias (or version).")
    for key in ("registry", "collection"):
        if key not in pairs:
            reader.fail(at, field, f"missing {key}: registry and collection go together, with "
                        "alias or version.")
    if "alias" in pairs and "version" in pairs:
        later = max(("alias", "version"), key=lambda key: pairs[key][0].start_mark.line)
        reader.fail(pairs[later][0], f"{field}.{later}", "give either alias or version, not both: "
                    "an alias follows whatever it points to, a version is one fixed version.")
    if "alias" not in pairs and "version" not in pairs:
        reader.fail(at, field, "missing alias or version: add e.g. alias: latest, or version: v3.")
    checks = {"registry": references.check_registry_part, "collection": references.check_collection,
              "alias": references.check_alias, "version": references.check_version}
    checked = {key: reader.checked(pairs, key, field, values[key], checks[key]) for key in parts}
    return Reference(org=org, **checked)


def _check_overlaps(reader: _Reader, entries: dict[str, Entry],
                    path_nodes: dict[str, yaml.Node]) -> None:
    """Two entries may not share a folder: each sync makes its folder hold exactly its artifact."""
    seen: list[Entry] = []
    for entry in entries.values():
        for other in seen:
            if relation := _overlap(entry.path, other.path):
                line = path_nodes[other.name].start_mark.line + 1
                reader.fail(path_nodes[entry.name], f"artifacts.{entry.name}.path",
                            f"{entry.path!r} {relation} {other.path!r}, the path of "
                            f"artifacts.{other.name} (line {line}): give each entry a folder of "
                            "its own, outside the others.")
        seen.append(entry)


def _overlap(path: str, other: str) -> str:
    """How ``path`` collides with ``other``, or "". Case-blind, as macOS and Windows are."""
    a, b = path.casefold(), other.casefold()
    if a == b:
        relation, exact = "is the same folder as", path == other
    elif a.startswith(b + "/"):
        relation, exact = "is inside", path.startswith(other + "/")
    elif b.startswith(a + "/"):
        relation, exact = "contains", other.startswith(path + "/")
    else:
        return ""
    return relation if exact else f"{relation} (ignoring case, as macOS and Windows do)"


def _kind(node: yaml.Node) -> tuple[str, str]:
    """What a node is, in words, and why YAML made it that."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping", ""
    if isinstance(node, yaml.SequenceNode):
        return "a list", ""
    return _KINDS.get(node.tag.removeprefix(_TAG), (f"a value tagged {node.tag}", "a YAML tag"))


def _yaml_problem(error: yaml.MarkedYAMLError, source: str, above: str) -> str:
    """PyYAML's problem, and the usual cause of the common ones (``above``: the line before)."""
    problem = (error.problem or "").removeprefix("but ")
    if error.context:
        problem += f" ({error.context})"
    if "\t" in source:  # libyaml's message does not say the character is a tab
        return f"{problem}: indent with spaces, not tabs."
    if _misindented(problem, source):
        return f"{problem}: {_indent_hint(source, above)}"
    hints = {
        "alias": 'a value starting with * (a glob such as *.md) must be quoted: "*.md".',
        "single document": "a manifest is one YAML document: remove the second ---.",
        "mapping values are not allowed": 'quote values that contain ": ".',
    }
    hint = next((text for key, text in hints.items() if key in problem), "fix the YAML syntax.")
    return f"{problem}: {hint}"


def _misindented(problem: str, source: str) -> bool:
    """YAML's words for a key at the wrong depth. "mapping values are not allowed" also means an
    unquoted ": " inside a value; a line with one ": " only (``path: m``) is a key out of place."""
    if "mapping values are not allowed" in problem:
        return ": " not in source.strip().partition(": ")[2]
    return any(words in problem for words in ("did not find expected key", "expected <block end>",
                                              "did not find expected '-' indicator"))


def _indent_hint(source: str, above: str) -> str:
    here, there = _indent(source), _indent(above)
    where = f"`{source.strip()}` is indented {here} spaces, `{above.strip()}` above it {there}"
    return (f"check the indentation ({where}): the keys of one entry line up at the same number of spaces, "
            "and an entry's keys sit deeper than its name.")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key
