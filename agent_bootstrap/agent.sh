#!/bin/sh
# Octo agent bootstrap: makes this machine a target of one Octo appliance.
#
# Served by the appliance at /bootstrap/agent.sh with its address and pins written in; run it
# as the install command prints it:
#   curl -fsSk --pinnedpubkey 'sha256//...' https://HOST:PORT/bootstrap/agent.sh \
#       | sh -s -- --token OCTOREG-... [--poll | --listen PORT]
# See agent_bootstrap/README.md for every option. Every failure stops with one line
# ("octo-agent install: error: ...") and undoes what this run did.

OCTO_HOST='@OCTO_HOST@'
OCTO_PORT='@OCTO_PORT@'
# curl --pinnedpubkey form of the appliance's public key; and its certificate's SHA-256
OCTO_PIN='@OCTO_PIN@'
OCTO_THUMBPRINT='@OCTO_THUMBPRINT@'
# the public key agent builds are signed with (empty: this appliance does not sign them)
OCTO_SIGNING_KEY='@OCTO_SIGNING_KEY@'
OCTO_PLATFORMS='@OCTO_PLATFORMS@'

set -u
umask 022
PROG="octo-agent install"
SERVER="https://$OCTO_HOST:$OCTO_PORT"
UNIT=octo-agent.service

token=${OCTO_REGISTRATION_TOKEN:-}
unset OCTO_REGISTRATION_TOKEN  # handed to the two commands that need it, not to the agent
mode=poll
listen_port=
public_host=
name=
prefix=
run_as=
service=auto
uninstall=0
wait_seconds=60
thumb=

say() { printf '%s\n' "$*"; }
fail() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    [ $# -gt 1 ] && printf '%s: hint: %s\n' "$PROG" "$2" >&2
    rollback
    exit 1
}
usage() {
    cat <<EOF
usage: sh agent.sh --token TOKEN [--poll | --listen PORT] [--public-host NAME] [--name NAME]
                   [--run-as USER|root] [--prefix DIR] [--no-systemd] [--wait SECONDS]
       sh agent.sh --uninstall [--token TOKEN] [--prefix DIR]
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --token) [ $# -ge 2 ] || fail "--token needs a value"; token=$2; shift ;;
        --token-file) [ $# -ge 2 ] || fail "--token-file needs a file"
            token=$(cat "$2") || fail "cannot read $2"; shift ;;
        --poll) mode=poll ;;
        --listen) [ $# -ge 2 ] || fail "--listen needs a port"; mode=listen; listen_port=$2; shift ;;
        --public-host) [ $# -ge 2 ] || fail "--public-host needs a name"; public_host=$2; shift ;;
        --name) [ $# -ge 2 ] || fail "--name needs a value"; name=$2; shift ;;
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a directory"; prefix=$2; shift ;;
        --run-as) [ $# -ge 2 ] || fail "--run-as needs a user"; run_as=$2; shift ;;
        --no-systemd) service=process ;;
        --wait) [ $# -ge 2 ] || fail "--wait needs seconds"; wait_seconds=$2; shift ;;
        --uninstall) uninstall=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; fail "unknown option: $1" "see the usage above" ;;
    esac
    shift
done

# -- what this run changed, undone by rollback() on failure ------------------------------------
created_prefix=0
registered_now=0
started_now=0
tmp=

rollback() {
    trap - EXIT INT TERM
    if [ "$started_now" = 1 ]; then stop_agent >/dev/null 2>&1; fi
    if [ "$registered_now" = 1 ]; then
        OCTO_REGISTRATION_TOKEN=$token "$bin" deregister --home "$home" >/dev/null 2>&1 ||
            printf '%s: warning: could not deregister %s; delete the target on the appliance\n' \
                "$PROG" "$name" >&2
    fi
    if [ "$created_prefix" = 1 ]; then remove_service_files; rm -rf "$prefix"; fi
    [ -n "$tmp" ] && rm -rf "$tmp"
}
on_signal() { fail "interrupted"; }

# -- where and how ----------------------------------------------------------------------------
platform() {
    os=$(uname -s 2>/dev/null); arch=$(uname -m 2>/dev/null)
    case "$os-$arch" in
        Linux-x86_64|Linux-amd64) echo linux-x86_64 ;;
        *) fail "this machine is $os $arch; the appliance offers agents for $OCTO_PLATFORMS only" \
                "install the agent from source (docs/agent.md) on other platforms" ;;
    esac
}

if [ "$(id -u)" = 0 ]; then
    as_root=1
    prefix=${prefix:-/opt/octo-agent}
    run_as=${run_as:-octo-agent}
    unit_dir=/etc/systemd/system
    systemctl_user=
else
    as_root=0
    prefix=${prefix:-${XDG_DATA_HOME:-$HOME/.local/share}/octo-agent}
    [ -z "$run_as" ] || [ "$run_as" = "$(id -un)" ] ||
        fail "--run-as $run_as needs root" "run the install command as root, or without --run-as"
    run_as=
    unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
    systemctl_user=--user
fi
bin=$prefix/bin/octo-agent
home=$prefix/home
pid_file=$prefix/agent.pid
log_file=$prefix/agent.log

use_systemd() {
    [ "$service" != process ] || return 1
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] || return 1
    [ "$as_root" = 1 ] || systemctl --user show-environment >/dev/null 2>&1
}

running_pid() {
    [ -f "$pid_file" ] || return 1
    pid=$(cat "$pid_file" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_agent() {
    if use_systemd && [ -f "$unit_dir/$UNIT" ]; then
        systemctl $systemctl_user disable --now "$UNIT" >/dev/null 2>&1
    fi
    if pid=$(running_pid); then
        kill "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pid_file"
}

remove_service_files() {
    if [ -f "$unit_dir/$UNIT" ] && grep -q "$home" "$unit_dir/$UNIT" 2>/dev/null; then
        rm -f "$unit_dir/$UNIT"
        use_systemd && systemctl $systemctl_user daemon-reload >/dev/null 2>&1
    fi
}

start_agent() {
    if use_systemd; then
        mkdir -p "$unit_dir" || fail "cannot create $unit_dir"
        user_line=; wanted=default.target
        if [ "$as_root" = 1 ]; then
            wanted=multi-user.target
            [ "$run_as" = root ] || user_line="User=$run_as"
        fi
        cat >"$unit_dir/$UNIT" <<EOF || fail "cannot write $unit_dir/$UNIT"
# Written by the Octo agent install script; rerun it to repair this file.
[Unit]
Description=Octo agent ($home)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=$bin run --supervise --home $home
$user_line
Restart=always
RestartSec=5
KillMode=mixed
TimeoutStopSec=30
UMask=0077

[Install]
WantedBy=$wanted
EOF
        systemctl $systemctl_user daemon-reload &&
            systemctl $systemctl_user enable "$UNIT" >/dev/null 2>&1 &&
            systemctl $systemctl_user restart "$UNIT" ||
            fail "systemctl could not start $UNIT" "see: journalctl $systemctl_user -u $UNIT"
        started_now=1
        how="systemd unit $unit_dir/$UNIT (enabled, started)"
        return
    fi
    if pid=$(running_pid); then
        how="background process $pid (already running; pid file $pid_file)"
        return
    fi
    if [ "$as_root" = 1 ] && [ "$run_as" != root ]; then
        command -v setpriv >/dev/null 2>&1 || fail "setpriv is needed to run the agent as $run_as"
        set -- setpriv --reuid="$run_as" --regid="$(id -g "$run_as")" --init-groups --
    else
        set --
    fi
    nohup "$@" "$bin" run --supervise --home "$home" >>"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    started_now=1
    how="background process $! (no systemd here; pid file $pid_file, log $log_file)"
}

ensure_user() {
    [ "$as_root" = 1 ] && [ "$run_as" != root ] || return 0
    id -u "$run_as" >/dev/null 2>&1 && return 0
    [ "$run_as" = octo-agent ] || fail "no user named $run_as" "create it, or pass --run-as root"
    useradd --system --no-create-home --home-dir "$prefix" --shell /usr/sbin/nologin octo-agent \
        >/dev/null 2>&1 || fail "could not create the octo-agent user" "or pass --run-as root"
}

# -- downloading the agent over the pinned connection -----------------------------------------
fetch() {
    curl -fsSk --pinnedpubkey "$OCTO_PIN" --retry 2 --max-time 300 "$@"
}

json_field() {  # json_field NAME FILE: a string or number field of a flat JSON object
    sed -n "s/.*\"$1\" *: *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$2" | head -n 1
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else openssl dgst -sha256 -r "$1" | cut -d' ' -f1; fi
}

download_agent() {
    tmp=$(mktemp -d) || fail "cannot create a temporary directory"
    fetch -o "$tmp/manifest.json" "$SERVER/api/v1/agent?platform=$1"
    code=$?
    [ $code = 90 ] && fail "the server at $SERVER is not the appliance this command came from (its key does not match the pin)" \
        "get the install command again from the appliance; do not skip the pin"
    [ $code = 0 ] || fail "cannot fetch the agent manifest from $SERVER (curl exit $code)" \
        "check that this machine reaches $OCTO_HOST:$OCTO_PORT"
    version=$(json_field version "$tmp/manifest.json")
    size=$(json_field size "$tmp/manifest.json")
    sha256=$(json_field sha256 "$tmp/manifest.json")
    [ -n "$sha256" ] && [ -n "$size" ] || fail "the appliance sent no usable agent manifest"
    if [ -x "$bin" ] && [ "$(sha256_of "$bin")" = "$sha256" ]; then
        say "agent $version is already installed at $bin"
        return
    fi
    fetch -o "$tmp/octo-agent" "$SERVER/api/v1/agent/download?platform=$1" ||
        fail "cannot download the agent from $SERVER (curl exit $?)"
    got=$(wc -c <"$tmp/octo-agent" | tr -d ' ')
    [ "$got" = "$size" ] || fail "the agent download is $got bytes, the manifest says $size" \
        "retry; if it persists, something between here and the appliance alters it"
    [ "$(sha256_of "$tmp/octo-agent")" = "$sha256" ] ||
        fail "the agent download does not match the manifest's SHA-256" "retry"
    chmod 755 "$tmp/octo-agent"
    if [ -n "$OCTO_SIGNING_KEY" ]; then
        "$tmp/octo-agent" verify-manifest --manifest "$tmp/manifest.json" \
            --public-key "$OCTO_SIGNING_KEY" --file "$tmp/octo-agent" >/dev/null ||
            fail "the agent build's signature does not verify" "do not run it; tell the operator"
    fi
    mkdir -p "$prefix/bin" || fail "cannot create $prefix/bin"
    mv -f "$tmp/octo-agent" "$bin" || fail "cannot install $bin"
    say "installed agent $version at $bin"
}

is_registered() { [ -f "$home/agent.json" ] && grep -q '"target_id": *"[^"]' "$home/agent.json"; }

# -- uninstall --------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
    trap - EXIT
    [ -e "$prefix" ] || { say "nothing to uninstall: $prefix does not exist"; exit 0; }
    stop_agent
    if is_registered && [ -x "$bin" ]; then
        if [ -n "$token" ] && OCTO_REGISTRATION_TOKEN=$token "$bin" deregister --home "$home"; then
            :
        else
            printf '%s: warning: the target stays on the appliance; delete it there\n' "$PROG" >&2
        fi
    fi
    remove_service_files
    rm -rf "$prefix" || fail "cannot remove $prefix"
    say "uninstalled: stopped the agent, removed $prefix"
    exit 0
fi

# -- install ----------------------------------------------------------------------------------
trap on_signal INT TERM
command -v curl >/dev/null 2>&1 || fail "curl is needed" "install curl, then rerun"
plat=$(platform) || exit 1
[ -n "$token" ] || fail "no registration token given" \
    "pass --token (from: octo-appliance agent install-command)"
case $token in OCTOREG-*) ;; *) fail "--token is not a registration token" \
    "use the command octo-appliance agent install-command prints (never an API key)" ;; esac
if [ "$mode" = listen ]; then
    case $listen_port in ''|*[!0-9]*) fail "--listen needs a port number" ;; esac
    public_host=${public_host:-$(hostname)}
fi
name=${name:-$(hostname)}

[ -e "$prefix" ] || created_prefix=1
mkdir -p "$prefix" || fail "cannot create $prefix" "run as root, or pass --prefix DIR"
ensure_user
download_agent "$plat"

if is_registered; then
    say "already registered: $home (target $(json_field target_id "$home/agent.json")); repairing the service"
else
    if [ "$mode" = listen ]; then
        set -- --listen "0.0.0.0:$listen_port" --public-host "$public_host"
    else
        set -- --poll
    fi
    # register creates the agent's certificate first (a home that has one keeps it)
    out=$(OCTO_REGISTRATION_TOKEN=$token "$bin" register --home "$home" --server "$SERVER" \
        --server-thumbprint "$OCTO_THUMBPRINT" --name "$name" "$@" 2>&1) ||
        fail "$(printf '%s\n' "$out" | sed -n 's/^octo-agent: error: //p' | head -n 1)"
    registered_now=1
    thumb=$(printf '%s\n' "$out" | sed -n 's/^agent thumbprint: //p')
    say "registered $name with $SERVER ($mode)"
fi
if [ "$as_root" = 1 ] && [ "$run_as" != root ]; then
    chown -R "$run_as" "$home" || fail "cannot give $home to $run_as"
fi
start_agent
# wait for the appliance to call it healthy, asking with curl (no agent start per question);
# the token goes in a header file, not on curl's command line; a background agent that exits
# ends the wait
target_id=$(json_field target_id "$home/agent.json")
[ -n "$thumb" ] || thumb=$("$bin" show-thumbprint --home "$home")
(umask 077 && printf 'X-Api-Key: %s\n' "$token" >"$tmp/header") || fail "cannot write $tmp"
deadline=$(($(date +%s) + wait_seconds))
while :; do
    status=$(fetch -H "@$tmp/header" \
        "$SERVER/api/v1/targets/$target_id/registration?thumbprint=$thumb" 2>/dev/null |
        sed -n 's/.*"health_status":"\([^"]*\)".*/\1/p')
    case $status in Healthy|HealthyWithWarnings) break ;; esac
    if ! use_systemd && ! running_pid >/dev/null; then
        fail "the agent stopped: $(tail -n 1 "$log_file" 2>/dev/null)" "see $log_file"
    fi
    [ "$(date +%s)" -lt "$deadline" ] ||
        fail "the appliance still reports this target ${status:-Unknown} after $wait_seconds s" \
            "see $log_file or: journalctl $systemctl_user -u $UNIT"
    sleep 0.2 2>/dev/null || sleep 1
done
trap - INT TERM
[ -n "$tmp" ] && rm -rf "$tmp"
say "$name is a healthy target of $SERVER"
say "  agent:   $bin (home $home)"
say "  runs as: ${run_as:-$(id -un)}, $how"
say "  remove:  rerun the install command with --uninstall"
