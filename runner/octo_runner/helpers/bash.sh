# Bash 4+ additions: the variables also fill the associative arrays octopus_parameters and
# octo_parameters, read straight from the descriptor with builtins only.
if [ "${BASH_VERSINFO[0]:-0}" -ge 4 ]; then
    declare -A octopus_parameters=() octo_parameters=()
    __octo_load_table() {
        local __octo_name __octo_escaped __octo_value
        while IFS=$'\t' read -r __octo_name __octo_escaped; do
            printf -v __octo_value '%b' "$__octo_escaped"
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
