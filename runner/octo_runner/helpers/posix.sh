# Octo runner bootstrap for sh and bash scripts: helper functions, then the script itself.
# This file holds no variable values. They arrive on the inherited file descriptor
# $OCTO_VARIABLES_FD as lines "NAME<TAB>VALUE" (VALUE with backslash, control characters and
# tabs written as \0ooo octal escapes, decoded by printf %b) and stay in shell memory; the
# script text arrives on $OCTO_SCRIPT_FD. Nothing secret touches disk, argv or environment.
# Helpers use __octo_* globals instead of `local`, which plain POSIX sh does not have.

__octo_nl='
'
__octo_tab='	'
__octo_vars=$__octo_nl

if command -v base64 >/dev/null 2>&1; then
    __octo_b64() { printf '%s' "$1" | base64 | tr -d '\r\n'; }
    __octo_unb64() { printf '%s' "$1" | base64 -d; }
elif command -v openssl >/dev/null 2>&1; then
    __octo_b64() { printf '%s' "$1" | openssl base64 -A; }
    __octo_unb64() { printf '%s' "$1" | openssl base64 -A -d; }
else
    __octo_b64() { echo "octo helpers: need base64 or openssl to send service messages" >&2; return 1; }
    __octo_unb64() { __octo_b64 "$1"; }
fi

# The table as one string; a lookup is one pattern match (no temp files, no subshells).
__octo_load_table() {
    __octo_vars=$__octo_nl$(cat "/dev/fd/$1")$__octo_nl
}

get_octovariable() {
    case $__octo_vars in
        *"$__octo_nl$1$__octo_tab"*)
            __octo_v=${__octo_vars#*"$__octo_nl$1$__octo_tab"}
            printf '%b\n' "${__octo_v%%"$__octo_nl"*}"
            __octo_v=
            ;;
    esac
    return 0
}

set_octovariable() {
    if [ $# -lt 2 ]; then
        echo "usage: set_octovariable NAME VALUE [-sensitive]" >&2
        return 2
    fi
    __octo_s=False
    case ${3:-} in -sensitive | --sensitive | -Sensitive | True | true) __octo_s=True ;; esac
    printf "##octo[setVariable name='%s' value='%s' sensitive='%s']\n" \
        "$(__octo_b64 "$1")" "$(__octo_b64 "$2")" "$(__octo_b64 "$__octo_s")"
}

mask_octovalue() {
    printf "##octo[mask value='%s']\n" "$(__octo_b64 "${1:-}")"
}

new_octoartifact() {
    if [ $# -lt 1 ]; then
        echo "usage: new_octoartifact PATH [NAME]" >&2
        return 2
    fi
    case $1 in /*) __octo_p=$1 ;; *) __octo_p=$PWD/$1 ;; esac
    if [ ! -f "$__octo_p" ]; then
        echo "new_octoartifact: no such file: $1" >&2
        return 1
    fi
    __octo_n=${2:-${__octo_p##*/}}
    __octo_l=$(wc -c <"$__octo_p" | tr -d ' ')
    printf "##octo[createArtifact path='%s' name='%s' length='%s']\n" \
        "$(__octo_b64 "$__octo_p")" "$(__octo_b64 "$__octo_n")" "$(__octo_b64 "$__octo_l")"
}

update_progress() {
    printf "##octo[progress percentage='%s' message='%s']\n" \
        "$(__octo_b64 "${1:-0}")" "$(__octo_b64 "${2:-}")"
}

fail_step() {
    if [ -n "${1:-}" ]; then
        printf "##octo[resultMessage message='%s']\n" "$(__octo_b64 "$1")"
    fi
    exit 1
}

__octo_write() {
    echo "##octo[stdout-$1]"
    shift
    printf '%s\n' "$*"
    echo "##octo[stdout-default]"
}
write_verbose() { __octo_write verbose "$@"; }
write_highlight() { __octo_write highlight "$@"; }
write_wait() { __octo_write wait "$@"; }
write_warning() { __octo_write warning "$@"; }
write_error() { __octo_write error "$@"; }

# The names Octopus Deploy's Calamari gives the same helpers. Scripts ported from Octopus also
# write their own "##octopus[...]" lines with encode_servicemessagevalue.
encode_servicemessagevalue() { __octo_b64 "${1:-}"; }
decode_servicemessagevalue() { __octo_unb64 "${1:-}"; }
set_octopusvariable() { set_octovariable "$@"; }
get_octopusvariable() { get_octovariable "$@"; }
new_octopusartifact() { new_octoartifact "$@"; }
