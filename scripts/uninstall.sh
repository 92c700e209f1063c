#!/bin/sh
# Removes the Concord service installed by install.sh: stops and disables it, removes the unit
# and the binary. Settings (/etc/concord) and data (/var/lib/concord) stay unless --purge is
# given, which also removes them and the `concord` user: take a backup first.
set -eu

usage() {
    cat <<'EOF'
Usage: uninstall.sh [--purge] [--root DIR]

  --purge     also delete /etc/concord, /var/lib/concord (every document and blob) and the user
  --root DIR  act on an installation laid out under DIR (no systemctl)
  -h, --help  this text
EOF
}

root=/
purge=false
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=true; shift ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run as root" >&2; exit 2; }
root=${root%/}
live=false
[ -z "$root" ] && live=true

if $live && systemctl list-unit-files concord.service >/dev/null 2>&1; then
    systemctl disable --now concord.service || true
fi
rm -f "$root/etc/systemd/system/concord.service" "$root/usr/local/bin/concord"
if $live; then
    systemctl daemon-reload
fi

if $purge; then
    rm -rf "$root/etc/concord" "$root/var/lib/concord"
    if $live; then
        if id concord >/dev/null 2>&1; then userdel concord; fi
    elif grep -q '^concord:' "$root/etc/passwd" 2>/dev/null; then
        userdel --prefix "$root" concord
    fi
    echo "concord removed with its settings, data and user"
else
    echo "concord removed; settings in $root/etc/concord and data in $root/var/lib/concord are kept"
fi
