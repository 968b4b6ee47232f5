# Shared by launch/*.sh and launch/slurm.sbatch (sourced, not executed).
#
# q ARG        prints ARG quoted for a POSIX shell (like Python's shlex.quote)
# run CMD...   runs CMD, or with DRY_RUN=1 prints it (one line, quoted) and
#              runs nothing
# join CMD...  prints CMD as one quoted line (for a remote --command)
# die MSG      prints "error: MSG" and the usage, exits 2

q() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

join() {
  local out="" a
  for a in "$@"; do out+="${out:+ }$(q "$a")"; done
  printf '%s' "$out"
}

run() {
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    join "$@"; echo
  else
    "$@"
  fi
}

die() {
  echo "error: $1" >&2
  usage >&2
  exit 2
}

# The remote shell line: cd REPO, activate VENV (if any), export the
# environment (CBENCH_DISTRIBUTED=1 plus ENV_VARS), then the command.
remote_line() {
  local repo=$1 venv=$2; shift 2
  local line="cd $(q "$repo")"
  if [[ -n $venv ]]; then line+=" && source $(q "$venv")/bin/activate"; fi
  local exports="CBENCH_DISTRIBUTED=1" kv
  for kv in "${ENV_VARS[@]+"${ENV_VARS[@]}"}"; do exports+=" $(q "$kv")"; done
  line+=" && export $exports && $(join "$@")"
  printf '%s' "$line"
}

check_env_var() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || die "--env=$1 is not NAME=VALUE"
}
