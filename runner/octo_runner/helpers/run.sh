# Load the variables, forget the descriptors' names, then run the script in this shell.
__octo_load_table "${OCTO_VARIABLES_FD:?run by the Octo runner only: OCTO_VARIABLES_FD is unset}"
# bash may get the table in a memory file, which stays readable (a pipe is empty once read):
# close it, so the script's children cannot read the variables from it again.
if [ -n "${BASH_VERSION-}" ]; then eval "exec ${OCTO_VARIABLES_FD}<&-"; fi
__octo_script=/dev/fd/${OCTO_SCRIPT_FD:?run by the Octo runner only: OCTO_SCRIPT_FD is unset}
unset OCTO_VARIABLES_FD OCTO_SCRIPT_FD
shift # this bootstrap's own path: the script starts without positional parameters
. "$__octo_script"
