#!/usr/bin/env bash
# Run one avjax command as several local processes that form one JAX cluster (CPU, gloo).
# Each process gets DEVICES fake CPU devices, so 2 × 4 behaves like two 4-device hosts (the
# count goes last in XLA_FLAGS, so an inherited device count cannot override it).
#   launch/local_multiprocess.sh 2 4 python -m avjax.main --config=configs/shift.py:local --workdir=W
# Exits non-zero if any process fails; a failing process stops the others.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS COMMAND..." >&2; exit 2
fi
nprocs=$1; devices=$2; shift 2
port=${AVJAX_COORDINATOR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
logdir=${AVJAX_LOG_DIR:-$(mktemp -d)}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for ((i = 0; i < nprocs; i++)); do
  JAX_COORDINATOR_ADDRESS=127.0.0.1:$port JAX_NUM_PROCESSES=$nprocs JAX_PROCESS_ID=$i \
  JAX_PLATFORMS=cpu XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices" \
    "$@" >"$logdir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    status=1
    echo "process $i failed; its log: $logdir/process_$i.log" >&2
    tail -n 5 "$logdir/process_$i.log" >&2 || true
  fi
done
trap - EXIT
[ $status -eq 0 ] && cat "$logdir/process_0.log"
exit $status
