#!/usr/bin/env bash
# Runs a cbench binary on every worker of a Cloud TPU VM (slice or pod).
#
#   launch/tpu_vm.sh [--dry_run] --name=NAME --zone=ZONE [--project=P]
#       [--accelerator_type=v5litepod-16 --runtime_version=VERSION --create]
#       [--copy] [--setup] [--delete] [--repo_dir=cbench] [--venv=.venv]
#       [--env=NAME=VALUE ...] -- python -m experiments.BINARY [--flag=value ...]
#
# Steps, in order, each only when asked (the run step always):
#   --create  gcloud compute tpus tpu-vm create NAME (accelerator, version)
#   --copy    git archive of this checkout's HEAD -> every worker's REPO_DIR
#   --setup   python3 -m venv VENV && pip install -e . 'jax[tpu]' on every worker
#   run       gcloud compute tpus tpu-vm ssh NAME --worker=all --command "cd
#             REPO_DIR && source VENV/bin/activate && export
#             CBENCH_DISTRIBUTED=1 ... && python -m experiments.BINARY ..."
#             (every worker runs the same command; jax.distributed.initialize()
#             finds the pod's coordinator itself)
#   --delete  gcloud compute tpus tpu-vm delete NAME --quiet
# REPO_DIR and VENV are relative to the workers' home directory unless
# absolute. --dry_run prints the exact commands, one per line, and runs
# nothing. Exit status 2: bad usage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

DRY_RUN=0 NAME="" ZONE="" PROJECT="" ACCEL="" VERSION="" CREATE=0 COPY=0
SETUP=0 DELETE=0 REPO_DIR="cbench" VENV=".venv"
ENV_VARS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --name=*) NAME=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --accelerator_type=*) ACCEL=${1#*=} ;;
    --runtime_version=*) VERSION=${1#*=} ;;
    --create) CREATE=1 ;;
    --copy) COPY=1 ;;
    --setup) SETUP=1 ;;
    --delete) DELETE=1 ;;
    --repo_dir=*) REPO_DIR=${1#*=} ;;
    --venv=*) VENV=${1#*=} ;;
    --env=*) check_env_var "${1#*=}"; ENV_VARS+=("${1#*=}") ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ $# -gt 0 ]] || die "missing the command after -- (python -m experiments.BINARY ...)"
check_binary_flags "$@"
[[ -n $NAME ]] || die "--name is required"
[[ -n $ZONE ]] || die "--zone is required"
if [[ $CREATE == 1 ]]; then
  [[ -n $ACCEL && -n $VERSION ]] || die "--create needs --accelerator_type and --runtime_version"
fi

TPU=(gcloud compute tpus tpu-vm)
WHERE=("--zone=$ZONE")
[[ -z $PROJECT ]] || WHERE+=("--project=$PROJECT")

if [[ $CREATE == 1 ]]; then
  run "${TPU[@]}" create "$NAME" "${WHERE[@]}" "--accelerator-type=$ACCEL" \
      "--version=$VERSION"
fi
if [[ $COPY == 1 ]]; then
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  TARBALL=${TMPDIR:-/tmp}/cbench-$NAME.tar.gz
  run git -C "$ROOT" archive --format=tar.gz "--output=$TARBALL" HEAD
  run "${TPU[@]}" scp "$TARBALL" "$NAME:cbench.tar.gz" "${WHERE[@]}" --worker=all
  run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all \
      "--command=mkdir -p $(q "$REPO_DIR") && tar xzf cbench.tar.gz -C $(q "$REPO_DIR")"
fi
if [[ $SETUP == 1 ]]; then
  run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all \
      "--command=cd $(q "$REPO_DIR") && python3 -m venv $(q "$VENV") && $(q "$VENV")/bin/pip install -q -e . 'jax[tpu]>=0.10,<0.11'"
fi
run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all \
    "--command=$(remote_line "$REPO_DIR" "$VENV" "$@")"
if [[ $DELETE == 1 ]]; then
  run "${TPU[@]}" delete "$NAME" "${WHERE[@]}" --quiet
fi
