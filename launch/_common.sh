# Shared by launch/*.sh and launch/slurm.sbatch (sourced, not executed).
#
# q ARG        prints ARG quoted for a POSIX shell (like Python's shlex.quote)
# run CMD...   runs CMD, or with DRY_RUN=1 prints it (one line, quoted) and
#              runs nothing
# join CMD...  prints CMD as one quoted line (for a remote --command)
# die MSG      prints "error: MSG" and the usage, exits 2
# check_binary_flags CMD...
#              when CMD is `python[3] -m experiments.BINARY ARGS`, parses
#              ARGS with the binary's own absl flags on this machine
#              (launch/flagcheck.py) and dies naming a bad flag, so a typo
#              fails here, in a --dry_run too, not on the cluster

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

check_binary_flags() {
  [[ ${1:-} == python* && ${2:-} == -m && ${3:-} == experiments.* ]] || return 0
  local module=$3
  shift 3
  local root checker json out status
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  checker=${CBENCH_PYTHON:-}
  if [[ -z $checker ]]; then
    if [[ -x $root/.venv/bin/python ]]; then checker=$root/.venv/bin/python
    else checker=python3; fi
  fi
  json=$("$checker" -c 'import json, sys; print(json.dumps([sys.argv[1:]]))' "$@")
  status=0
  out=$(cd "$root" && printf '%s' "$json" | "$checker" -m launch.flagcheck "$module" 2>&1) || status=$?
  if [[ $status == 1 ]]; then
    die "$module rejects its flags: $(printf '%s' "$out" | tr -d '[]"' | sed 's/^null, //;s/, null$//')"
  elif [[ $status != 0 ]]; then
    echo "warning: flags of $module not checked here ($out)" >&2
  fi
}
