#!/usr/bin/env bash
# The release's build and checks, as the release workflow (.github/workflows/release.yml) and CI
# (.ci/run) run them: build the sdist and the wheel (the wheel from the sdist, so the sdist is
# proven complete), `twine check --strict` both, install the wheel into a fresh virtualenv
# and run the offline quick start with it, outside this checkout.
#
#   scripts/release_check.sh [vX.Y.Z]
#
# With a tag (the release workflow passes the pushed one), the built version must be X.Y.Z and
# CHANGELOG.md must have its `## [X.Y.Z]` section. Needs `build` and `twine` (the dev extra) and
# the package index (the build backend and the wheel's dependencies). Leaves the files in
# ${WBSYNC_DIST:-dist}/.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-}
dist=${WBSYNC_DIST:-dist}
constraints=$PWD/constraints.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/wbsync-release-XXXXXX")
trap 'rm -rf "$work"' EXIT

rm -rf "$dist"
python -m build --outdir "$dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
sdists=("$dist"/wbsync_lock-*.tar.gz)
wheels=("$dist"/wbsync_lock-*-py3-none-any.whl)
[ "${#sdists[@]}" = 1 ] && [ -f "${sdists[0]}" ] && [ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] \
    || { echo "release check: expected one sdist and one wheel in $dist/, found: $(ls "$dist")" >&2; exit 1; }
python -m twine check --strict "${sdists[0]}" "${wheels[0]}"

version=$(basename "${wheels[0]}" | cut -d- -f2)
echo "release check: built wbsync-lock $version"
if [ -n "$tag" ]; then
    [ "$version" = "${tag#v}" ] \
        || { echo "release check: tag $tag but the build says $version (is the tag on this commit?)" >&2; exit 1; }
    grep -q "^## \[${version//./\\.}\] - " CHANGELOG.md \
        || { echo "release check: CHANGELOG.md has no '## [$version] - DATE' section; add it, then tag" >&2; exit 1; }
fi

python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q -c "$constraints" "${wheels[0]}"
mkdir "$work/demo"
cp -R examples/demo/artifacts.yaml examples/demo/artifacts.lock examples/demo/mirror "$work/demo/"
(
    cd "$work/demo"
    # The installed wheel's own wbsync, not this checkout's.
    installed=$("$work/venv/bin/wbsync" --version)
    [ "$installed" = "wbsync, version $version" ] \
        || { echo "release check: the wheel's wbsync --version says '$installed', expected $version" >&2; exit 1; }
    "$work/venv/bin/python" -c 'import sys, wbsync; sys.exit(not wbsync.__file__.startswith(sys.prefix))'
    export WBSYNC_CACHE_DIR=$work/store
    "$work/venv/bin/wbsync" sync
    "$work/venv/bin/wbsync" verify
)
echo "release check: $(basename "${sdists[0]}") and $(basename "${wheels[0]}") are ready to publish"
