#!/bin/sh
# Installs or upgrades Concord as a systemd service. Idempotent: run it again with a new binary
# to upgrade (settings and data are kept; the binary and the unit are replaced; the service is
# restarted).
#
# Lays out, under ROOT (default /):
#   /usr/local/bin/concord                    0755 root:root      the binary
#   /etc/systemd/system/concord.service       0644 root:root      the hardened unit
#   /etc/concord/                             0750 root:concord
#   /etc/concord/concord.env                  0640 root:concord   settings; written once, never overwritten
#   /var/lib/concord/                         0750 concord:concord the data directory
# and a system user and group `concord`. With --root other than /, the user is added to ROOT's
# own /etc/passwd and /etc/group (useradd --prefix) and systemctl is not called, so the layout can
# be built and inspected in a scratch directory.
set -eu

usage() {
    cat <<'EOF'
Usage: install.sh [--binary FILE] [--root DIR]

  --binary FILE  the concord binary to install [default: target/release/concord of this checkout]
  --root DIR     install under DIR instead of /; no systemctl, the user goes into DIR/etc/passwd
  -h, --help     this text
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
root=/
binary="$here/../target/release/concord"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a file}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
unit="$here/../deploy/concord.service"
[ -x "$binary" ] || { echo "install.sh: no executable binary at $binary (build with cargo build --release, or pass --binary)" >&2; exit 2; }
[ -f "$unit" ] || { echo "install.sh: missing $unit" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
root=${root%/}
live=false
[ -z "$root" ] && live=true

# The system user and group, created once.
if $live; then
    if ! id concord >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/concord --shell /usr/sbin/nologin concord
    fi
    uid=$(id -u concord)
    gid=$(id -g concord)
else
    mkdir -p "$root/etc"
    for f in passwd group shadow gshadow; do
        [ -e "$root/etc/$f" ] || { touch "$root/etc/$f"; chmod 0600 "$root/etc/$f"; }
    done
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    if ! grep -q '^concord:' "$root/etc/passwd"; then
        useradd --prefix "$root" --system --user-group --home-dir /var/lib/concord --shell /usr/sbin/nologin concord
    fi
    uid=$(awk -F: '$1 == "concord" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "concord" { print $4 }' "$root/etc/passwd")
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
install -d -m 0750 -o 0 -g "$gid" "$root/etc/concord"
install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/concord"

# The binary: copied beside the old one and renamed over it, so a running server keeps its file.
install -m 0755 -o 0 -g 0 "$binary" "$root/usr/local/bin/concord.new"
mv -f "$root/usr/local/bin/concord.new" "$root/usr/local/bin/concord"
install -m 0644 -o 0 -g 0 "$unit" "$root/etc/systemd/system/concord.service"

env_file="$root/etc/concord/concord.env"
if [ ! -e "$env_file" ]; then
    umask 077
    cat >"$env_file" <<'EOF'
# Concord settings, read by concord.service. Every setting is listed in the README
# ("Configuration"); after a change: systemctl restart concord.
CONCORD_LISTEN=127.0.0.1:3030
# The URL people and clients reach this server at (behind the reverse proxy):
#PUBLIC_URL=https://sync.example.com
#APP_BASE_URL=https://app.example.com
#CORS_ORIGINS=https://app.example.com
# Without SMTP credentials mail is not sent (dev mode): set all of these for real mail.
#SMTP_HOST=smtp.example.com
#SMTP_PORT=465
#SMTP_USERNAME=
#SMTP_PASSWORD=
#SMTP_FROM_EMAIL=noreply@example.com
# Scheduled backups (inside the data directory, the only place the service may write):
#CONCORD_BACKUP_DIR=/var/lib/concord/backups
#CONCORD_BACKUP_EVERY=24h
#CONCORD_BACKUP_KEEP=7
CONCORD_LOG_FORMAT=json
EOF
fi
chown 0:"$gid" "$env_file"
chmod 0640 "$env_file"

if $live; then
    systemctl daemon-reload
    systemctl enable concord.service
    # restart, not start: on an upgrade the new binary must take over.
    systemctl restart concord.service
    echo "concord installed and started; logs: journalctl -u concord"
else
    echo "concord laid out under $root (systemctl not called)"
fi
