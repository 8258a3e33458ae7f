"""The bugs ``python -m bench.mutants`` plants, one at a time, and the tests meant to catch each.

Each patch replaces an exact snippet that must occur once in the file (whitespace included).
When the code moves, the mutant fails loudly with "patch does not apply" instead of silently
testing nothing: update the snippet to the new code, keeping the bug the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    file: str  # relative to the repository
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    patches: tuple[Patch, ...]
    tests: tuple[str, ...]  # pytest node ids (a file, or file::test for every parameter of it)


def one(name: str, bug: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(name, bug, (Patch(file, old, new),), tests)


TRUST = "tests/test_trust.py::"
FAIL = "tests/test_failures.py::"
CMDS = "tests/test_commands.py::"
LOCKSYNC = "tests/test_lock_and_sync.py::"
DISK = "tests/test_disk_full.py::"
PLACE = "tests/test_place.py::"
MATRIX = "tests/test_fault_matrix.py::test_fault_cell"
HOSTILE = "tests/test_hostile.py::"
NET = "tests/test_network.py::"

MUTANTS: tuple[Mutant, ...] = (
    one("rehash-size-only", "files on disk that the state does not vouch for are checked by size, not digest",
        "wbsync/sync.py",
        "            return hash_file(path, action.record.algorithm) == action.record.digest\n",
        "            return path.stat().st_size == action.record.size\n",
        TRUST + "test_a_file_edited_without_changing_its_size_is_restored_by_the_next_sync"),
    one("store-commit-unchecked", "the store commits what arrived without comparing its digest with the lock's",
        "wbsync/store.py",
        "        if self.offset != self.record.size or got != self.record.digest:\n",
        "        if self.offset != self.record.size:\n",
        FAIL + "test_wrong_bytes_exit_4_are_discarded_and_leave_the_tree_intact"),
    one("place-despite-fetch-failure", "an entry is placed although some of its files failed to download",
        "wbsync/sync.py",
        "                if entry.name not in failures:\n                    self._place_entry(entry, result)\n",
        "                self._place_entry(entry, result)\n",
        FAIL + "test_persistent_server_errors_exit_3_naming_the_artifact_and_file_and_change_nothing"),
    Mutant("delete-unlocked-files", "a sync deletes files in an entry's folder that the lock does not list",
           (Patch("wbsync/sync.py", "        self._forget(entry)\n",
                  "        self._forget(entry)\n"
                  "        locked_ = {f.path for f in entry.artifact.files}\n"
                  "        for path_ in list(folder.rglob('*')):\n"
                  "            if path_.is_file() and path_.relative_to(folder).as_posix() not in locked_:\n"
                  "                path_.unlink()\n"),),
           (TRUST + "test_files_wbsync_did_not_place_are_never_removed",)),
    one("re-resolve-pins", "lock re-resolves every entry instead of keeping the existing pins",
        "wbsync/resolve.py",
        "    todo = sorted(set(stale_names(manifest, old)) | (upgrade & set(manifest.entries)))\n",
        "    todo = sorted(manifest.entries)\n",
        LOCKSYNC + "test_lock_keeps_existing_pins_when_the_alias_moves"),
    one("never-trust-state", "the recorded state is never trusted: every file on disk is re-hashed",
        "wbsync/plan.py",
        "        elif known is not None and known.stat == stat:\n",
        "        elif False:\n",
        TRUST + "test_a_frozen_sync_of_an_intact_tree_needs_no_manifest_and_no_network",
        TRUST + "test_a_touched_but_identical_file_is_rehashed_once_and_then_trusted"),
    one("always-refetch", "the content store is never used: every sync downloads again",
        "wbsync/store.py",
        "            return os.stat(self.blob_path(record)).st_size == record.size\n",
        "            return False\n",
        TRUST + "test_a_modified_file_is_restored_from_the_store_without_a_download",
        LOCKSYNC + "test_a_second_project_syncing_a_stored_version_downloads_nothing"),
    one("ignore-locked", "`sync --locked` writes a stale lock instead of failing",
        "wbsync/sync.py",
        "            if locked:\n                raise CheckFailed(",
        "            if False:\n                raise CheckFailed(",
        CMDS + "test_sync_locked_refuses_to_write_a_stale_lock"),
    one("non-atomic-lock-write", "the lockfile is written in place, not through a temp file and a rename",
        "wbsync/lockfile.py",
        "        write_atomic(target, text.encode(\"utf-8\"))\n",
        "        target.write_bytes(text.encode(\"utf-8\"))\n",
        DISK + "test_a_lock_that_cannot_be_written_fails_cleanly_and_the_old_lock_stays"),
    one("5xx-as-success", "a 5xx answer to a file download is taken as the file's bytes",
        "wbsync/transfer.py",
        "        elif resp.status not in (200, 206):\n",
        "        elif resp.status not in (200, 206) and resp.status < 500:\n",
        FAIL + "test_server_errors_on_file_downloads_are_retried_and_recovered"),
    one("swallow-persistent-5xx", "retries run out on a persistent 5xx and the download is reported as done",
        "wbsync/fetch.py",
        "                if failures >= self.policy.attempts or cancel.is_set() or self._cancel.is_set():\n",
        "                if failures >= self.policy.attempts or cancel.is_set() or self._cancel.is_set():\n"
        "                    return\n",
        FAIL + "test_persistent_server_errors_exit_3_naming_the_artifact_and_file_and_change_nothing"),
    one("one-phase-placement", "placement renames each file right after staging it (no two phases)",
        "wbsync/sync.py",
        "        staged = self._stage_all(blobs, dests)\n",
        "        staged = []\n"
        "        for blob_, dest_ in zip(blobs, dests):\n"
        "            commit_staged(self._stage_one(blob_, dest_))\n",
        DISK + "test_an_upgrade_whose_first_files_fit_and_last_does_not_leaves_the_old_version_whole",
        DISK + "test_a_full_project_disk_fails_cleanly_with_no_partial_file"),
    one("no-project-lock", "no per-project sync lock: two syncs of one project run at once",
        "wbsync/sync.py",
        "        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)\n",
        "",
        TRUST + "test_a_second_sync_of_the_project_waits_for_the_first_so_neither_loses_what_the_other_placed"),
    one("verify-size-only", "`verify` compares sizes only",
        "wbsync/verify.py",
        "        return \"ok\" if hash_file(path, record.algorithm) == record.digest else \"modified\"\n",
        "        return \"ok\"\n",
        CMDS + "test_verify_finds_a_file_edited_without_changing_its_size",
        CMDS + "test_verify_lists_missing_modified_and_extra_files_and_exits_1"),
    one("orphan-only-noop", "a plan whose only work is removing a dropped entry's files counts as a no-op",
        "wbsync/plan.py",
        "        return not self.orphans and not any(e.changes for e in self.entries)\n",
        "        return not any(e.changes for e in self.entries)\n",
        TRUST + "test_removing_one_entry_alone_removes_its_files_and_keeps_the_others"),
    one("removal-only-noop", "an entry whose only work is removing files a new version dropped counts as unchanged",
        "wbsync/plan.py",
        "        return bool(self.check or self.place or self.remove)\n",
        "        return bool(self.check or self.place)\n",
        TRUST + "test_a_new_version_that_only_drops_files_removes_them"),
    one("ignore-retry-after", "`Retry-After` is ignored: the usual backoff is used instead",
        "wbsync/fetch.py",
        "        if retry_after is not None:\n            return min(retry_after, self.max_wait)\n",
        "",
        FAIL + "test_a_429_retry_after_is_honoured"),
    one("no-range-resume", "a dropped transfer starts over instead of resuming with a Range request",
        "wbsync/transfer.py",
        "    headers = {\"Range\": f\"bytes={start}-{'' if end is None else end - 1}\"} if ranged else {}\n",
        "    headers = {}\n",
        TRUST + "test_a_dropped_transfer_resumes_with_a_range_request"),
    one("unseen-entry-change", "a changed manifest entry (same name) is not seen as stale",
        "wbsync/agreement.py",
        "        elif (why := disagreement(entry, locked[name])) is not None:\n",
        "        elif False:\n",
        CMDS + "test_lock_check_exits_1_when_the_manifest_changed",
        LOCKSYNC + "test_a_changed_manifest_entry_is_relocked_on_sync"),
    one("skip-symlink-check", "symlinked folders in a destination are not checked for escapes",
        "wbsync/place.py",
        "        problem = _symlink_escape(root, parts[:-1])\n",
        "        problem = None\n",
        PLACE + "test_safe_join_refuses_a_symlinked_folder_that_leads_outside",
        FAIL + "test_a_destination_symlink_leading_outside_the_project_is_refused"),
    one("trust-size-alone", "a placed file is trusted while its size alone matches the state",
        "wbsync/plan.py",
        "        elif known is not None and known.stat == stat:\n",
        "        elif known is not None and known.stat[0] == stat[0]:\n",
        TRUST + "test_a_file_edited_without_changing_its_size_is_restored_by_the_next_sync"),
    one("remove-edited-files", "files of a dropped version are removed even when the user edited them",
        "wbsync/sync.py",
        "            if known is not None and known.stat != stat and not _holds(path, known.digest):\n                return False\n",
        "",
        TRUST + "test_an_edited_file_of_a_dropped_version_is_kept_and_reported"),
    one("hardlink-writable", "a hardlinked file (the store's blob itself) is left writable",
        "wbsync/place.py",
        "            os.link(blob, temp)\n",
        "            os.link(blob, temp)\n            os.chmod(temp, 0o644)\n",
        PLACE + "test_an_in_place_edit_of_a_hardlinked_file_is_refused"),
    one("reflink-never-clones", "the clone request never succeeds (a wrong ioctl): `auto` silently copies",
        "wbsync/place.py",
        "            fcntl.ioctl(dst, FICLONE, src)\n            return \"reflink\"\n",
        "            raise OSError(errno.ENOTTY, \"inappropriate ioctl\")\n",
        PLACE + "test_reflink_clones_on_a_filesystem_that_can_and_an_edit_leaves_the_blob_intact"),

    # -- the rules of the issues worked on beside this one (12, 13, 14, 16, 17), as they landed --
    one("reserved-names-unchecked", "files and folders named .git or .wbsync are written like any other",
        "wbsync/reserved.py",
        "    if path.isascii() and not _ASCII_RESERVED.search(path):\n        return None\n",
        "    return None\n",
        HOSTILE + "test_an_artifact_with_files_in_a_git_folder_is_refused_before_anything_is_written",
        HOSTILE + "test_a_git_status_after_syncing_an_artifact_never_runs_its_command"),
    one("reserved-names-bytewise", "reserved names compared byte for byte: .GIT, '.git. ', .g\u200cit slip through",
        "wbsync/reserved.py",
        "    folded = _HFS_IGNORED.sub(\"\", name).translate(_UPPER)\n"
        "    folded = folded.partition(\":\")[0].rstrip(\". \")  # NTFS: streams, trailing dots and spaces\n",
        "    folded = name\n",
        HOSTILE + "test_a_lock_whose_path_points_at_a_reserved_folder_is_refused_by_every_command"),
    one("lock-not-checked-on-read", "a lock's own paths are not checked when it is read (a hand-edited lock)",
        "wbsync/agreement.py",
        "    for name, art in sorted(lock.artifacts.items()):\n        try:\n            normal = normalize_path(art.path)\n",
        "    for name, art in ():\n        try:\n            normal = normalize_path(art.path)\n",
        HOSTILE + "test_a_lock_listing_a_file_inside_git_is_refused_even_when_frozen"),
    one("lock-path-agreement", "a lock whose path was edited by hand (digest kept) still counts as agreeing",
        "wbsync/agreement.py",
        "    if art.path != entry.path:\n        return _field(\"path\", art.path, entry.path)\n",
        "",
        HOSTILE + "test_a_lock_pointing_an_entry_at_the_users_code_is_stale_and_never_overwrites_it"),
    one("lock-collection-agreement", "a lock pinning another collection than the manifest asks for is acted on",
        "wbsync/agreement.py",
        "    if (pinned.registry, pinned.collection) != (ref.registry, ref.collection):\n",
        "    if False:\n",
        HOSTILE + "test_a_lock_pointing_at_another_collection_is_stale_and_its_bytes_are_never_placed"),
    one("lock-filter-agreement", "a lock listing files the entry's include/exclude leave out is acted on",
        "wbsync/agreement.py",
        "        if not selected(entry, f.path):\n",
        "        if False:\n",
        HOSTILE + "test_a_lock_listing_a_file_the_entrys_filters_leave_out_is_stale"),
    one("search-past-git-root", "the search for artifacts.yaml goes on above the git repository's root",
        "wbsync/project.py",
        "        if (folder / \".git\").exists():  # a folder, or a file in worktrees and submodules\n            break\n",
        "",
        "tests/test_discovery.py::test_the_search_stops_at_the_git_repository_root"),
    one("url-secrets-shown", "a diagnosis shows the server URL with its password and query string",
        "wbsync/sources/diagnose.py",
        "    return urlunsplit((parts.scheme, netloc, parts.path, \"\", \"\"))\n",
        "    return url\n",
        "tests/test_diagnosis.py::test_the_url_is_shown_without_its_password_or_query"),
    one("any-server-is-wandb", "a server that answers anything but W&B's GraphQL is taken for W&B",
        "wbsync/sources/diagnose.py",
        "    if looks_like_wandb and status < 500:\n",
        "    if status < 500:\n",
        "tests/test_diagnosis.py::test_a_server_that_is_not_wandb_is_named_as_such"),
    # Issue 13: downloads over a real network.
    one("no-link-renewal", "an expired link is never renewed: the sync fails where it could carry on",
        "wbsync/fetch.py",
        "        self._renew = renew\n",
        "        self._renew = None\n",
        NET + "test_links_that_expire_mid_sync_are_renewed_in_one_batch_and_the_sync_completes"),
    one("renew-one-link-at-a-time", "expired links are renewed one file per listing call, not in one batch",
        "wbsync/fetch.py",
        "                paths = sorted(self._pending[job.artifact] | {job.record.path})\n",
        "                paths = [job.record.path]\n",
        NET + "test_links_that_expire_mid_sync_are_renewed_in_one_batch_and_the_sync_completes"),
    one("renew-forever", "links refused again and again are renewed without a bound",
        "wbsync/fetch.py",
        "                if refusals > self.policy.refreshes:\n",
        "                if refusals > 10 * self.policy.refreshes:\n",
        NET + "test_a_server_that_keeps_refusing_fresh_links_exits_3_after_a_bounded_number_of_renewals"),
    one("no-stall-rule", "a connection that trickles a byte at a time is never dropped",
        "wbsync/transfer.py",
        "            raise Retry(f\"stalled: fewer than {self.rule.min_bytes} bytes in {self.rule.window_s:g} s\")\n",
        "            pass\n",
        NET + "test_a_server_that_sends_a_byte_at_a_time_is_dropped_as_stalled_and_retried",
        NET + "test_a_link_that_stays_stalled_exits_3_without_waiting_for_the_whole_file"),
    one("no-redirects", "redirects are not followed",
        "wbsync/transfer.py",
        "        if resp.status not in REDIRECTS or not location:\n",
        "        if True:\n",
        NET + "test_redirected_links_are_followed_to_another_host_without_credentials"),
    one("ranged-commit-unchecked", "a file fetched in ranges is named without comparing its whole digest",
        "wbsync/partial.py",
        "        if digest != self.record.digest:\n",
        "        if False:\n",
        NET + "test_a_range_with_wrong_bytes_is_caught_by_the_whole_file_digest"),
    one("resume-from-scratch", "a part-done file is thrown away: a killed sync fetches every range again",
        "wbsync/partial.py",
        "        blob.done = blob._resumable()\n",
        "        blob.done = set()\n",
        NET + "test_a_sync_killed_in_the_middle_of_a_large_file_resumes_with_only_the_missing_ranges"),
    one("no-claims", "processes sharing a store do not claim blobs: each fetches what the others fetch",
        "wbsync/fetch.py",
        "        if not self.claims.try_claim(job.record):\n",
        "        if False:\n",
        NET + "test_projects_syncing_the_same_files_at_once_fetch_each_blob_once"),
)
