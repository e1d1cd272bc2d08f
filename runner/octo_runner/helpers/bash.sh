# Bash 4+ additions: the variables also fill the associative arrays octopus_parameters and
# octo_parameters, read straight from the descriptor with builtins only.
if [ "${BASH_VERSINFO[0]:-0}" -ge 4 ]; then
    declare -A octopus_parameters=() octo_parameters=()
    __octo_load_table() {
        local __octo_name __octo_escaped __octo_value
        while IFS=$'\t' read -r __octo_name __octo_escaped; do
            case $__octo_escaped in
                *\\*) printf -v __octo_value '%b' "$__octo_escaped" ;;
                *) __octo_value=$__octo_escaped ;; # no escape in it: most values
            esac
            octopus_parameters[$__octo_name]=$__octo_value
            octo_parameters[$__octo_name]=$__octo_value
        done <"/dev/fd/$1"
    }
    get_octovariable() {
        if [ -n "${octopus_parameters[$1]+set}" ]; then
            printf '%s\n' "${octopus_parameters[$1]}"
        fi
        return 0
    }
fi

# Service message values encoded by the shell itself: `$(__octo_b64 ...)` costs a subshell and
# two processes (base64, tr), and set_octovariable encodes three values: ~10 ms of CPU per
# call, twice a two-line script's own cost (issue 14). Short values are encoded here with
# builtins (byte by byte: LC_ALL=C); longer ones, for which the loop would cost more than the
# processes, still go through base64. No arithmetic command may evaluate to 0: under `set -e`
# its status would end the script.
__octo_b64_to() {
    local LC_ALL=C
    local __octo_in=$2 __octo_out='' __octo_i=0 __octo_n __octo_x __octo_a __octo_b __octo_c
    local __octo_t=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/
    __octo_n=${#__octo_in}
    if [ "$__octo_n" -gt 192 ]; then
        printf -v "$1" '%s' "$(__octo_b64 "$__octo_in")"
        return 0
    fi
    while [ "$__octo_i" -lt "$__octo_n" ]; do
        printf -v __octo_a '%d' "'${__octo_in:__octo_i:1}"
        printf -v __octo_b '%d' "'${__octo_in:__octo_i+1:1}"
        printf -v __octo_c '%d' "'${__octo_in:__octo_i+2:1}"
        __octo_x=$((((__octo_a & 255) << 16) | ((__octo_b & 255) << 8) | (__octo_c & 255)))
        __octo_out+=${__octo_t:__octo_x >> 18 & 63:1}${__octo_t:__octo_x >> 12 & 63:1}
        if [ $((__octo_i + 1)) -lt "$__octo_n" ]; then
            __octo_out+=${__octo_t:__octo_x >> 6 & 63:1}
        else
            __octo_out+='='
        fi
        if [ $((__octo_i + 2)) -lt "$__octo_n" ]; then
            __octo_out+=${__octo_t:__octo_x & 63:1}
        else
            __octo_out+='='
        fi
        __octo_i=$((__octo_i + 3))
    done
    printf -v "$1" '%s' "$__octo_out"
}

set_octovariable() {
    if [ $# -lt 2 ]; then
        echo "usage: set_octovariable NAME VALUE [-sensitive]" >&2
        return 2
    fi
    local __octo_s=False __octo_en __octo_ev __octo_es
    case ${3:-} in -sensitive | --sensitive | -Sensitive | True | true) __octo_s=True ;; esac
    __octo_b64_to __octo_en "$1"
    __octo_b64_to __octo_ev "$2"
    __octo_b64_to __octo_es "$__octo_s"
    printf "##octo[setVariable name='%s' value='%s' sensitive='%s']\n" \
        "$__octo_en" "$__octo_ev" "$__octo_es"
}

mask_octovalue() {
    local __octo_ev
    __octo_b64_to __octo_ev "${1:-}"
    printf "##octo[mask value='%s']\n" "$__octo_ev"
}

encode_servicemessagevalue() {
    local __octo_ev
    __octo_b64_to __octo_ev "${1:-}"
    printf '%s' "$__octo_ev"
}
