#!/usr/bin/env bash
# TPU pod slice: run the same command on every worker; jax.distributed finds the pod itself.
# The workdir must be on storage every worker sees (a GCS bucket: gs://..., orbax writes there).
#   launch/tpu_pod.sh TPU_NAME ZONE configs/asmp.py gs://bucket/runs/asmp [--config.KEY=V ...]
set -euo pipefail
name=${1:?tpu name}; zone=${2:?zone}; config=${3:?config}; workdir=${4:?workdir}; shift 4
extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command \
  "cd ~/avjax && pip install -q -e . 'jax[tpu]' && python -m avjax.main --config=$config --workdir=$workdir$extra"
