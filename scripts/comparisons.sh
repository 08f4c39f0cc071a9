#!/usr/bin/env bash
# The committed comparisons (results/coco, results/cityscapes): every codec at the same target bitrates, so that
# BD-rates on the machine axis exist between all of them, then the learned anchor and the human-machine methods.
#
#   RESULTS_DIR=results bash scripts/comparisons.sh coco|cityscapes [OVERRIDE ...]
#
# Run from a folder whose data/ holds the datasets (data_root) and with HMC_BENCH_WEIGHTS set to the task
# networks' weights; the overrides go to every sweep. The committed COCO results are on the 158-image subset of
# the benchmark assets: dataset.annotations=annotations/instances_val2017_subset158.json. Each sweep resumes where it stopped. Rate points: one
# setting per target for the whole dataset (`mode: dataset`, as a common-test-conditions QP; calibrated on 40 samples
# spread over the dataset), the nearest
# within 3 %; a learned codec sweeps its trained qualities (targeting could only pick the nearest of them).
# ONLY=human-machine runs the human-machine methods alone.
set -euo pipefail
dataset="${1:?coco | cityscapes}"
shift
out="${RESULTS_DIR:-results}"
TARGETS="{profile: [0.2, 0.25, 0.35, 0.5, 0.7, 1.0], mode: dataset, tolerance: 0.03, calibration_samples: 40}"
CODECS=(jpeg webp avif jpeg2000 jpegxl hevc-intra)
run() { nice -n 10 "${PYTHON:-python}" -m bench run "results_dir=$out" progress=false workers=1 \
  "cache_dir=${CACHE_DIR:-bench-cache}" "${EXTRA[@]}" "$@"; }
EXTRA=("$@")
# the human-machine methods with shipped weights, each at every rate it ships (its config's `rates`), on the
# task network its modules were trained for: EAC (YOLOX-Nano, then ESPNet), ICMH with that dataset's network,
# feature-stream (YOLOX-Nano) on COCO; SICMH, latent-scalable and compressed-domain (ESPNet) on Cityscapes
case "$dataset" in
  coco) task=yolox-nano human_machine=("method=eac" "method=feature-stream" "method=icmh") ;;
  cityscapes)  # ESPNet: the network EAC's second task and SICMH are trained for (a results file holds one run's
    # tasks: `task=segmentation`, DeepLab EdgeTPU, would need a results folder of its own)
    task=espnet human_machine=("method=eac" "method=icmh method.tasks=[espnet]" "method=sicmh"
      "method=latent-scalable" "method=compressed-domain") ;;
  *) echo "unknown dataset $dataset (coco | cityscapes)" >&2; exit 2 ;;
esac
if [ "${ONLY:-}" != human-machine ]; then
  for m in "${CODECS[@]}"; do run method="$m" dataset="$dataset" task="$task" "rate_target=$TARGETS"; done
  run method=bmshj2018-hyperprior-ours dataset="$dataset" task="$task" 'method.rates=[1,2,3,4,5]'
fi
for m in "${human_machine[@]}"; do
  read -ra method_args <<<"$m"
  run "${method_args[@]}" dataset="$dataset" task="$task"
done
