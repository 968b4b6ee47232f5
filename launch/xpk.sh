#!/usr/bin/env bash
# Runs a cbench binary as an XPK workload on a GKE cluster (TPU or GPU).
#
#   launch/xpk.sh [--dry_run] --cluster=CLUSTER --workload=NAME
#       --docker_image=IMAGE (--tpu_type=v5litepod-256 | --device_type=h100-80gb-8)
#       [--num_slices=1] [--num_nodes=N] [--project=P] [--zone=Z]
#       [--repo_dir=/app] [--env=NAME=VALUE ...] [--delete]
#       -- python -m experiments.BINARY [--flag=value ...]
#
# Runs
#   xpk workload create --cluster=CLUSTER --workload=NAME --docker-image=IMAGE
#       --tpu-type=... | --device-type=... --num-slices=N [--project --zone]
#       --command "cd REPO_DIR && export CBENCH_DISTRIBUTED=1 ... && python -m ..."
# inside IMAGE (cbench installed in REPO_DIR; every pod runs the same command
# and jax.distributed.initialize() discovers the others). --delete instead runs
# xpk workload delete. --dry_run prints the exact command and runs nothing.
# Exit status 2: bad usage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

DRY_RUN=0 CLUSTER="" WORKLOAD="" IMAGE="" TPU_TYPE="" DEVICE_TYPE=""
NUM_SLICES=1 NUM_NODES="" PROJECT="" ZONE="" REPO_DIR="/app" DELETE=0
ENV_VARS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --cluster=*) CLUSTER=${1#*=} ;;
    --workload=*) WORKLOAD=${1#*=} ;;
    --docker_image=*) IMAGE=${1#*=} ;;
    --tpu_type=*) TPU_TYPE=${1#*=} ;;
    --device_type=*) DEVICE_TYPE=${1#*=} ;;
    --num_slices=*) NUM_SLICES=${1#*=} ;;
    --num_nodes=*) NUM_NODES=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --repo_dir=*) REPO_DIR=${1#*=} ;;
    --env=*) check_env_var "${1#*=}"; ENV_VARS+=("${1#*=}") ;;
    --delete) DELETE=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ -n $CLUSTER ]] || die "--cluster is required"
[[ -n $WORKLOAD ]] || die "--workload is required"
WHERE=("--cluster=$CLUSTER")
[[ -z $PROJECT ]] || WHERE+=("--project=$PROJECT")
[[ -z $ZONE ]] || WHERE+=("--zone=$ZONE")
if [[ $DELETE == 1 ]]; then
  run xpk workload delete "${WHERE[@]}" "--workload=$WORKLOAD"
  exit 0
fi
[[ $# -gt 0 ]] || die "missing the command after -- (python -m experiments.BINARY ...)"
check_binary_flags "$@"
[[ -n $IMAGE ]] || die "--docker_image is required"
if [[ -n $TPU_TYPE && -n $DEVICE_TYPE ]] || [[ -z $TPU_TYPE && -z $DEVICE_TYPE ]]; then
  die "give exactly one of --tpu_type and --device_type"
fi
[[ $NUM_SLICES =~ ^[1-9][0-9]*$ ]] || die "--num_slices=$NUM_SLICES is not a positive integer"
ACCEL=()
if [[ -n $TPU_TYPE ]]; then ACCEL+=("--tpu-type=$TPU_TYPE"); else ACCEL+=("--device-type=$DEVICE_TYPE"); fi
ACCEL+=("--num-slices=$NUM_SLICES")
if [[ -n $NUM_NODES ]]; then
  [[ $NUM_NODES =~ ^[1-9][0-9]*$ ]] || die "--num_nodes=$NUM_NODES is not a positive integer"
  ACCEL+=("--num-nodes=$NUM_NODES")
fi
run xpk workload create "${WHERE[@]}" "--workload=$WORKLOAD" \
    "--docker-image=$IMAGE" "${ACCEL[@]}" \
    "--command=$(remote_line "$REPO_DIR" "" "$@")"
