#!/usr/bin/env bash
# Installs the swarm nodes on a host: release binaries, systemd units, logrotate files, the service
# users, and N instance directories of each kind. Idempotent: a second run changes nothing; files
# of ours (binaries, units, logrotate files, docs) are replaced when they differ, instance configs
# and credentials are written only when missing (they are the operator's), and nothing is ever
# deleted: instances beyond N are left alone.
#
#   scripts/install.sh [--prefix DIR] [--instances N] [--dht N] [--logfiles N] [--queue N]
#                      [--bin-dir DIR] [--listen-host IP] [--enable]
#
#   --prefix DIR       install under DIR instead of / (a staging root: paths inside the installed
#                      files stay the final ones, e.g. ExecStart=/usr/local/bin/dhtnode)
#   --instances N      instances of every kind (default 1); --dht/--logfiles/--queue N override it
#                      per kind (0: none). Instance i of a kind listens on the kind's default port
#                      + i (dhtnode 10000, logfilesnode 11000, queuenode 12000), so at most 10.
#   --bin-dir DIR      take the binaries from DIR instead of building them with
#                      `cargo build --release` (e.g. when installing with sudo from a tree built
#                      as yourself: --bin-dir target/release)
#   --listen-host IP   the address the nodes listen on (default 127.0.0.1). Any other than a
#                      loopback address turns authentication on: each node's etc/credentials is
#                      used, and each dhtdump gets a key of its own in dump/etc/client.key, which
#                      is added to its node's credentials.
#   --enable           (prefix / only, with systemd running) enable and start every instance
#
# Layout (docs/operations.md, "Layout of an instance"):
#   /usr/local/bin/{dhtnode,dhtdump,dumptool,logfilesnode,logfiles_check,queuenode,swarmctl}
#   /etc/systemd/system/{dhtnode,dhtdump,logfilesnode,queuenode}@.service
#   /etc/logrotate.d/swarm-*          /etc/sysusers.d/swarm.conf
#   /usr/local/share/doc/swarm/{operations.md,examples/*.toml}
#   /srv/<kind>/<kind>-<i>/{etc/config.toml,etc/credentials,data/,log/}
#   /srv/dhtnode/dhtnode-<i>/dump/{etc/config.toml,data/,log/,backup-data/}   (dhtdump)
set -euo pipefail
shopt -s inherit_errexit
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KINDS=(dhtnode logfilesnode queuenode)
BINARIES=(dhtnode dhtdump dumptool logfilesnode logfiles_check queuenode swarmctl)

die() {
    echo "install.sh: $*" >&2
    exit 1
}
say() { echo "install.sh: $*"; }

usage() {
    sed -n '/^#   scripts/,/^#   --enable/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

PREFIX=/
INSTANCES=1
declare -A COUNT=()
BIN_DIR=""
LISTEN_HOST=127.0.0.1
ENABLE=0

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
count_arg() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1: '$2' is not a number"
    echo "$2"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
    --instances) need_value "$@"; INSTANCES=$(count_arg "$1" "$2"); shift 2 ;;
    --dht) need_value "$@"; COUNT[dhtnode]=$(count_arg "$1" "$2"); shift 2 ;;
    --logfiles) need_value "$@"; COUNT[logfilesnode]=$(count_arg "$1" "$2"); shift 2 ;;
    --queue) need_value "$@"; COUNT[queuenode]=$(count_arg "$1" "$2"); shift 2 ;;
    --bin-dir) need_value "$@"; BIN_DIR=$2; shift 2 ;;
    --listen-host) need_value "$@"; LISTEN_HOST=$2; shift 2 ;;
    --enable) ENABLE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (--help lists them)" ;;
    esac
done
for kind in "${KINDS[@]}"; do
    COUNT[$kind]=${COUNT[$kind]:-$INSTANCES}
    [ "${COUNT[$kind]}" -le 10 ] ||
        die "at most 10 instances of $kind per host (instance i listens on the default port + i)"
done

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd -P)
# "$ROOT/usr/..." is the installed path; ROOT is empty for the real root.
ROOT=${PREFIX%/}
if [ "$PREFIX" = / ]; then ON_HOST=1; else ON_HOST=0; fi
if [ "$(id -u)" -eq 0 ]; then AS_ROOT=1; else AS_ROOT=0; fi
[ "$ENABLE" -eq 0 ] || [ "$ON_HOST" -eq 1 ] || die "--enable needs --prefix /"

case "$LISTEN_HOST" in
127.* | ::1) AUTH=0 ;;
*) AUTH=1 ;;
esac
# The address a dhtdump on the same host uses to reach its node.
case "$LISTEN_HOST" in
0.0.0.0) CONNECT_HOST=127.0.0.1 ;;
::) CONNECT_HOST=::1 ;;
*) CONNECT_HOST=$LISTEN_HOST ;;
esac
host_port() { # HOST PORT -> HOST:PORT, brackets around an IPv6 address
    case "$1" in
    *:*) echo "[$1]:$2" ;;
    *) echo "$1:$2" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Files and directories, each written only when it differs, so that a second run changes nothing.

CHANGED=0
note_change() {
    CHANGED=$((CHANGED + 1))
    say "$*"
}

# owner_ids USER -> "uid:gid" of USER in the installed system's user database, or nothing.
declare -A IDS=()
owner_ids() {
    if [ -z "${IDS[$1]+set}" ]; then
        if [ "$ON_HOST" -eq 1 ]; then
            IDS[$1]=$(id -u "$1" 2>/dev/null):$(id -g "$1" 2>/dev/null) || IDS[$1]=""
            [ "${IDS[$1]}" != ":" ] || IDS[$1]=""
        elif [ -f "$PREFIX/etc/passwd" ]; then
            IDS[$1]=$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "$PREFIX/etc/passwd")
        else
            IDS[$1]=""
        fi
    fi
    OWNER_IDS=${IDS[$1]}
}

# set_attrs PATH MODE [USER [GROUP]]: mode, and ownership when we are root and the user exists
# (USER "root" or empty: root; GROUP defaults to USER's group). Reports a change only for a path
# that existed before (the caller's `fresh` is 0): a new one was reported as created.
set_attrs() {
    local path=$1 mode=$2 user=${3:-root} group=${4:-} want="" have have_mode
    read -r have_mode have < <(stat -c '%a %u:%g' "$path")
    if [ "$have_mode" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        [ "${fresh:-0}" -eq 1 ] || note_change "mode $mode $path"
    fi
    [ "$AS_ROOT" -eq 1 ] || return 0
    if [ "$user" = root ]; then
        want="0:0"
    else
        owner_ids "$user"
        want=$OWNER_IDS
        [ -n "$want" ] || return 0
    fi
    if [ -n "$group" ]; then
        if [ "$group" = root ]; then
            want="${want%%:*}:0"
        else
            owner_ids "$group"
            [ -n "$OWNER_IDS" ] || return 0
            want="${want%%:*}:${OWNER_IDS#*:}"
        fi
    fi
    if [ "$have" != "$want" ]; then
        chown "$want" "$path"
        [ "${fresh:-0}" -eq 1 ] || note_change "owner $user${group:+:$group} $path"
    fi
}

# make_dir DIR MODE [USER [GROUP]]
make_dir() {
    local fresh=0
    if [ ! -d "$1" ]; then
        mkdir -p "$1"
        note_change "created $1/"
        fresh=1
    fi
    set_attrs "$@"
}

# ensure_dir DIR: a system directory (/etc/logrotate.d, /usr/local/bin, ...): created if missing,
# otherwise left exactly as the system has it.
ensure_dir() {
    if [ ! -d "$1" ]; then
        mkdir -p "$1"
        note_change "created $1/"
    fi
}

# put_file SRC DST MODE [USER [GROUP]]: DST becomes a copy of SRC (replaced atomically).
put_file() {
    local src=$1 dst=$2 fresh=0
    shift 2
    [ -f "$src" ] || die "missing $src"
    ensure_dir "$(dirname "$dst")"
    [ -e "$dst" ] || fresh=1
    if [ ! -f "$dst" ] || ! cmp -s "$src" "$dst"; then
        cp "$src" "$dst.install-tmp"
        chmod "$1" "$dst.install-tmp"
        mv -f "$dst.install-tmp" "$dst"
        note_change "installed $dst"
    fi
    set_attrs "$dst" "$@"
}

# put_new TEXT DST MODE [USER [GROUP]]: writes DST from TEXT only if DST does not exist yet.
put_new() {
    local text=$1 dst=$2 fresh=0
    shift 2
    if [ ! -e "$dst" ]; then
        fresh=1
        (umask 077 && printf '%s\n' "$text" >"$dst.install-tmp")
        chmod "$1" "$dst.install-tmp"
        mv -f "$dst.install-tmp" "$dst"
        note_change "created $dst"
    fi
    set_attrs "$dst" "$@"
}

# ---------------------------------------------------------------------------------------------
# Binaries.

if [ -z "$BIN_DIR" ]; then
    command -v cargo >/dev/null ||
        die "cargo not found: build as yourself first (cargo build --release), then run this with --bin-dir target/release"
    say "building release binaries"
    (cd "$REPO" && cargo build --release -p dhtnode -p dhtdump -p logfilesnode -p logfiles-check -p queuenode -p client --bins)
    BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
fi
for bin in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$bin" ] || die "no executable $BIN_DIR/$bin"
done
for bin in "${BINARIES[@]}"; do
    put_file "$BIN_DIR/$bin" "$ROOT/usr/local/bin/$bin" 0755
done

# ---------------------------------------------------------------------------------------------
# Units, logrotate, users, docs.

ensure_dir "$ROOT/etc"
for unit in "$REPO"/deploy/systemd/*@.service; do
    put_file "$unit" "$ROOT/etc/systemd/system/$(basename "$unit")" 0644
done
for rotate in "$REPO"/deploy/logrotate/swarm-*; do
    put_file "$rotate" "$ROOT/etc/logrotate.d/$(basename "$rotate")" 0644
done
put_file "$REPO/deploy/sysusers/swarm.conf" "$ROOT/etc/sysusers.d/swarm.conf" 0644
put_file "$REPO/docs/operations.md" "$ROOT/usr/local/share/doc/swarm/operations.md" 0644
for example in "$REPO"/deploy/config/*.toml; do
    put_file "$example" "$ROOT/usr/local/share/doc/swarm/examples/$(basename "$example")" 0644
done

USERS_OK=0
if [ "$AS_ROOT" -eq 0 ]; then
    say "not root: no service users created, ownership left as it is"
elif command -v systemd-sysusers >/dev/null; then
    sysusers_out=$(systemd-sysusers --root="$PREFIX" "$ROOT/etc/sysusers.d/swarm.conf" 2>&1) ||
        die "systemd-sysusers failed: $sysusers_out"
    [ -z "$sysusers_out" ] || note_change "users: $sysusers_out"
    USERS_OK=1
elif [ "$ON_HOST" -eq 1 ]; then
    for kind in "${KINDS[@]}"; do
        if ! id -u "$kind" >/dev/null 2>&1; then
            useradd --system --user-group --home-dir "/srv/$kind" --no-create-home \
                --shell /usr/sbin/nologin --comment "swarm $kind" "$kind"
            note_change "created user $kind"
        fi
    done
    USERS_OK=1
else
    say "no systemd-sysusers: service users not created under $PREFIX (etc/sysusers.d/swarm.conf makes them at boot)"
fi

# ---------------------------------------------------------------------------------------------
# Instances.

# The port in the example config's `# listen = "127.0.0.1:PORT"` line: the kind's default.
default_port() {
    local port
    port=$(sed -n 's/^# listen = "127\.0\.0\.1:\([0-9]*\)"$/\1/p' "$REPO/deploy/config/$1.toml")
    [ -n "$port" ] || die "deploy/config/$1.toml has no '# listen = \"127.0.0.1:PORT\"' line"
    echo "$port"
}

# dht_range I N -> "MIN MAX": the I-th of N hash ranges that tile the hash space evenly (split on
# the upper 32 bits, so bash's signed 64-bit arithmetic suffices).
dht_range() {
    local i=$1 n=$2 lo hi
    lo=$((i * 4294967296 / n))
    if [ $((i + 1)) -eq "$n" ]; then
        printf '0x%08x00000000 0xffffffffffffffff\n' "$lo"
    else
        hi=$(((i + 1) * 4294967296 / n - 1))
        printf '0x%08x00000000 0x%08xffffffff\n' "$lo" "$hi"
    fi
}

# edit TEXT SED-EXPR CHECK-REGEX: applies the sed expression, and fails unless the result has a
# line matching CHECK-REGEX (so that a changed example config cannot slip through unedited).
edit() {
    local out
    out=$(printf '%s\n' "$1" | sed -e "$2")
    # A here-string, not a pipe: grep -q stops at the first match, and under pipefail the printf
    # it left writing into a closed pipe would fail the check (SIGPIPE) on a busy machine.
    grep -q -- "$3" <<<"$out" || die "cannot edit the example config: no line matches $3"
    printf '%s\n' "$out"
}

CREDENTIALS_HEADER="# Clients allowed to connect, one \"name:hexkey\" line each (keys: 32 to 256 hex digits, e.g.
# from \"openssl rand -hex 64\"). Used when etc/config.toml sets [auth] credentials_file. Keep this
# file unreadable by others (mode 0640, group of the service user)."

instance_config() { # KIND I PORT -> the instance's etc/config.toml
    local kind=$1 i=$2 port=$3 text listen
    listen=$(host_port "$LISTEN_HOST" "$port")
    text="# $kind-$i, written by scripts/install.sh from deploy/config/$kind.toml
# (every key, its default and meaning). This file is yours: install.sh never overwrites it.
$(cat "$REPO/deploy/config/$kind.toml")"
    text=$(edit "$text" "s|^# listen = \"127\\.0\\.0\\.1:[0-9]*\"\$|listen = \"$listen\"|" "^listen = ")
    if [ "$AUTH" -eq 1 ]; then
        text=$(edit "$text" 's|^# credentials_file = "etc/credentials"$|credentials_file = "etc/credentials"|' \
            '^credentials_file = ')
    fi
    if [ "$kind" = dhtnode ]; then
        local bounds
        read -r -a bounds <<<"$(dht_range "$i" "${COUNT[dhtnode]}")"
        text=$(edit "$text" "s|^range_min = .*|range_min = \"${bounds[0]}\"|" "^range_min = \"${bounds[0]}\"")
        text=$(edit "$text" "s|^range_max = .*|range_max = \"${bounds[1]}\"|" "^range_max = \"${bounds[1]}\"")
    fi
    printf '%s\n' "$text"
}

dhtdump_config() { # I PORT -> dump/etc/config.toml of dhtnode-I
    local i=$1 port=$2 text
    text="# dhtdump of dhtnode-$i, written by scripts/install.sh from deploy/config/dhtdump.toml
# (every key, its default and meaning). This file is yours: install.sh never overwrites it.
$(cat "$REPO/deploy/config/dhtdump.toml")"
    text=$(edit "$text" "s|^node = .*|node = \"$(host_port "$CONNECT_HOST" "$port")\"|" '^node = ')
    if [ "$AUTH" -eq 1 ]; then
        text=$(edit "$text" 's|^# \[credentials\]$|[credentials]|; s|^# key_file = "etc/client.key"$|key_file = "etc/client.key"|; s|^# name = "dhtdump"$|name = "dhtdump"|' \
            '^key_file = ')
    fi
    printf '%s\n' "$text"
}

for kind in "${KINDS[@]}"; do
    n=${COUNT[$kind]}
    [ "$n" -gt 0 ] || continue
    base=$(default_port "$kind")
    ensure_dir "$ROOT/srv"
    make_dir "$ROOT/srv/$kind" 0755
    for ((i = 0; i < n; i++)); do
        dir="$ROOT/srv/$kind/$kind-$i"
        port=$((base + i))
        make_dir "$dir" 0750 "$kind"
        make_dir "$dir/etc" 0750 root "$kind"
        config=$(instance_config "$kind" "$i" "$port")
        put_new "$config" "$dir/etc/config.toml" 0640 root "$kind"
        put_new "$CREDENTIALS_HEADER" "$dir/etc/credentials" 0640 root "$kind"
        make_dir "$dir/data" 0750 "$kind"
        make_dir "$dir/log" 0755 "$kind"
        [ "$kind" = dhtnode ] || continue
        make_dir "$dir/dump" 0750 "$kind"
        make_dir "$dir/dump/etc" 0750 root "$kind"
        config=$(dhtdump_config "$i" "$port")
        put_new "$config" "$dir/dump/etc/config.toml" 0640 root "$kind"
        make_dir "$dir/dump/data" 0750 "$kind"
        make_dir "$dir/dump/log" 0755 "$kind"
        make_dir "$dir/dump/backup-data" 0750 "$kind"
        if [ "$AUTH" -eq 1 ] && [ ! -e "$dir/dump/etc/client.key" ]; then
            key=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
            put_new "dhtdump:$key" "$dir/dump/etc/client.key" 0640 root "$kind"
            if grep -q '^dhtdump:' "$dir/etc/credentials"; then
                say "warning: $dir/etc/credentials already has a dhtdump entry; replace it by the line in $dir/dump/etc/client.key"
            else
                echo "dhtdump:$key" >>"$dir/etc/credentials"
                note_change "added dhtdump's key to $dir/etc/credentials"
            fi
        fi
    done
done

# ---------------------------------------------------------------------------------------------
# systemd.

instances=()
for kind in "${KINDS[@]}"; do
    for ((i = 0; i < ${COUNT[$kind]}; i++)); do
        instances+=("$kind@$i.service")
        [ "$kind" != dhtnode ] || instances+=("dhtdump@$i.service")
    done
done
if [ "$ON_HOST" -eq 1 ] && [ -d /run/systemd/system ] && [ "$AS_ROOT" -eq 1 ]; then
    systemctl daemon-reload
    if [ "$ENABLE" -eq 1 ] && [ ${#instances[@]} -gt 0 ]; then
        systemctl enable --now "${instances[@]}"
    fi
elif [ "$ENABLE" -eq 1 ]; then
    die "--enable: systemd is not running here (or not root)"
fi

if [ "$CHANGED" -eq 0 ]; then
    say "everything already in place under $PREFIX"
else
    say "$CHANGED changes under $PREFIX"
fi
if [ "$USERS_OK" -eq 0 ] && [ "$AS_ROOT" -eq 1 ]; then
    say "note: instance directories are owned by root until the service users exist"
fi
if [ "$ENABLE" -eq 0 ] && [ ${#instances[@]} -gt 0 ]; then
    say "start with: systemctl enable --now ${instances[*]}"
fi
