#!/usr/bin/env bash
# Installs the outside test suites that tests/suite_*.rs run against a real
# sessionfs mount, at pinned versions, when they are missing:
# - fsx 0.3.2 and pjdfstest 0.2.2, from crates.io (cargo install --locked);
# - Checkbox (PyPI checkbox-ng 1.18.1) in a venv, with psutil and tqdm, which
#   its wheel imports without declaring them, and a Jinja2 old enough for
#   its report exporters;
# - plainbox 0.38 in .venv-plainbox (or $PLAINBOX_VENV), as scripts/test.sh
#   installs it.
# Each is checked first, so a second run takes well under a second.
#
# They go to $SESSIONFS_SUITES_DIR, by default
# ${XDG_CACHE_HOME:-~/.cache}/sessionfs-suites, outside the work tree, so
# fresh clones (CI's) reuse them. On success it prints, on stdout, the
# variables the suite tests read, ready for eval:
#   eval "$(scripts/suites.sh)" && cargo test --test suite_fsx
# (the tests find the same default paths without them).
#
# pjdfstest switches to two unprivileged users, nobody:nogroup and
# daemon:daemon (tests/data/suites/pjdfstest.toml), which every Debian
# system has; this script only checks that they exist.
set -euo pipefail
cd "$(dirname "$0")/.."

FSX_VERSION=0.3.2
PJDFSTEST_VERSION=0.2.2
CHECKBOX_VERSION=1.18.1
CHECKBOX_EXTRAS=(psutil==7.2.2 tqdm==4.70.1 Jinja2==3.0.3 MarkupSafe==2.1.5)

say() { echo "suites.sh: $*" >&2; }

dir=${SESSIONFS_SUITES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sessionfs-suites}
mkdir -p "$dir"

# cargo install NAME VERSION: the binary ends up in $dir/NAME-VERSION/bin.
install_crate() {
    local name=$1 version=$2 root="$dir/$1-$2"
    if [ -x "$root/bin/$name" ] && "$root/bin/$name" --version 2>/dev/null | grep -qF "$version"; then
        return 0
    fi
    say "installing $name $version into $root (a few minutes, once)"
    # A target dir of its own: the project's target/ stays as it is, the
    # two suites share their common dependencies, and a half-finished build
    # is reused on the next try. It goes once both are installed.
    CARGO_TARGET_DIR="$dir/build" cargo install --quiet --locked \
        --version "$version" --root "$root" "$name" >&2
    "$root/bin/$name" --version >/dev/null
}

install_crate fsx "$FSX_VERSION"
install_crate pjdfstest "$PJDFSTEST_VERSION"
rm -rf "$dir/build"

for entry in nobody:nogroup daemon:daemon; do
    user=${entry%%:*} group=${entry##*:}
    if ! getent passwd "$user" >/dev/null || ! getent group "$group" >/dev/null; then
        say "pjdfstest needs the user $user and the group $group, which are missing"
        exit 1
    fi
done

checkbox_venv=${CHECKBOX_VENV:-$dir/venv-checkbox-$CHECKBOX_VERSION}
if ! "$checkbox_venv/bin/python" - "$CHECKBOX_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
import psutil, tqdm
from jinja2 import Markup  # the html exporter needs it (gone in Jinja2 3.1)
from plainbox.impl.session.storage import WellKnownDirsHelper
from checkbox_ng.launcher import checkbox_cli
sys.exit(version("checkbox-ng") != sys.argv[1])
EOF
then
    say "installing checkbox-ng $CHECKBOX_VERSION into $checkbox_venv"
    python3 -m venv "$checkbox_venv"
    "$checkbox_venv/bin/pip" install --quiet --no-input --disable-pip-version-check \
        "checkbox-ng==$CHECKBOX_VERSION" "${CHECKBOX_EXTRAS[@]}" >&2
fi

plainbox_venv=${PLAINBOX_VENV:-$PWD/.venv-plainbox}
if ! "$plainbox_venv/bin/python" -c 'import plainbox.impl.session.storage' 2>/dev/null; then
    say "installing plainbox 0.38 into $plainbox_venv"
    python3 -m venv "$plainbox_venv"
    "$plainbox_venv/bin/pip" install --quiet --no-input --disable-pip-version-check \
        'plainbox==0.38.0' >&2
fi

printf 'export SESSIONFS_FSX=%q\n' "$dir/fsx-$FSX_VERSION/bin/fsx"
printf 'export SESSIONFS_PJDFSTEST=%q\n' "$dir/pjdfstest-$PJDFSTEST_VERSION/bin/pjdfstest"
printf 'export CHECKBOX_PYTHON=%q\n' "$checkbox_venv/bin/python"
printf 'export PLAINBOX_PYTHON=%q\n' "$plainbox_venv/bin/python"
