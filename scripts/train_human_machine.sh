#!/usr/bin/env bash
# The CPU schedules behind the shipped human-machine checkpoints (README, "Human-machine methods: what ships").
#
#   HMC_BENCH_ASSETS=<assets> bash scripts/train_human_machine.sh METHOD [RATE ...]
#   HMC_BENCH_ASSETS=<assets> bash scripts/train_human_machine.sh export METHOD TASK RATE ...
#
# METHOD: icmh | eac-espnet | latent-scalable | feature-stream | compressed-domain | sicmh. Training images are the
# open ones of the assets (BSDS500 + the COCO train2017 subset; distillation against the frozen task network needs
# no labels); the backbone is the shipped bmshj2018-hyperprior-ours. One thread, `nice`. Runs go to
# ${HMC_BENCH_RUNS:-runs}/<method>/<task>/rate-<r>; each `bench train` resumes from its last checkpoint, so running
# this again continues where it stopped. `export` writes a run's model.pt into checkpoints/ as fp16 + sidecar.
#
# The papers' schedules (EAC: 5 epochs of COCO at batch 96 per stage; SICMH: hundreds of epochs) do not fit a
# CPU: every run here is shortened (steps below), with the papers' losses; the sidecars record the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HMC_BENCH_ASSETS:?set HMC_BENCH_ASSETS to the benchmark assets (train_images/, weights/)}"
export HMC_BENCH_WEIGHTS="${HMC_BENCH_WEIGHTS:-$HMC_BENCH_ASSETS/weights}"
RUNS="${HMC_BENCH_RUNS:-runs}"
export HMC_BENCH_RUNS="$RUNS"
DATA=(dataset=folder "dataset.root=$HMC_BENCH_ASSETS/train_images" threads=1 "val_samples=${VAL_SAMPLES:-8}" progress=false)
PY=${PYTHON:-python}
train() { nice -n 10 "$PY" -m bench train "${DATA[@]}" "$@"; }
ckpt=checkpoints/bmshj2018-hyperprior-ours

method="${1:?method: icmh | eac-espnet | latent-scalable | feature-stream | compressed-domain | sicmh | export}"
shift
rates() { if [ $# -gt 0 ]; then echo "$@"; else echo "$DEFAULT_RATES"; fi; }
# latent-scalable, feature-stream and compressed-domain: TASK=yolox-nano (default) or TASK=espnet (at the crop's
# size); STEPS: steps per rate point
TASK="${TASK:-yolox-nano}"
# latent-scalable's γ (feature MSE weight): ESPNet's packed level3 features are small (mean square ~0.005), so
# at γ = 100 the base layer would be trained for the image alone; 1e5 balances the two terms at the start
if [ "$TASK" = espnet ]; then TASK_ARGS=(task=espnet 'task.input_size=[128,128]'); SPLIT_CROP=128 GAMMA=1.0e5
else TASK_ARGS=(task="$TASK"); SPLIT_CROP=256 GAMMA=100.0; fi
case "$method" in
  icmh)  # EAC's single-task form with YOLOX-Nano; q1 from scratch, q2-q5 from the quality below
    for q in $(DEFAULT_RATES="1 2 3 4 5" rates "$@"); do
      if [ "$q" = 1 ]; then P=800 A=400 INIT=null; else P=400 A=200 INIT="$RUNS/icmh/yolox-nano/rate-$((q - 1))/model.pt"; fi
      train method=icmh 'method.tasks=[yolox-nano]' 'method.rates=[1,2,3,4,5]' task=yolox-nano rate="$q" crop=128 \
        recipe.stages.predictor.steps=$P recipe.stages.predictor.batch_size=8 \
        recipe.stages.adapter.steps=$A recipe.stages.adapter.batch_size=8 recipe.stages.adapter.lr=1.0e-4 \
        recipe.init_from="$INIT"
    done ;;
  eac-espnet)  # EAC's second task; EAC trains each task's predictor on its own, so these are ICMH's ESPNet modules
    # too: export them to checkpoints/icmh/espnet (checkpoints/eac/<task> link to checkpoints/icmh/<task>)
    for q in $(DEFAULT_RATES="1 2 3 4 5" rates "$@"); do
      if [ "$q" = 1 ]; then P=600 A=300 INIT=null; else P=300 A=150 INIT="$RUNS/eac/espnet/rate-$((q - 1))/model.pt"; fi
      train method=eac 'method.tasks=[yolox-nano,espnet]' 'method.rates=[1,2,3,4,5]' task=espnet \
        'task.input_size=[128,128]' rate="$q" crop=128 'recipe.lambdas={1: 0.45, 2: 0.675, 3: 1.125, 4: 1.8, 5: 2.7}' \
        recipe.stages.predictor.steps=$P recipe.stages.predictor.batch_size=8 \
        recipe.stages.adapter.steps=$A recipe.stages.adapter.batch_size=8 recipe.stages.adapter.lr=1.0e-4 \
        recipe.init_from="$INIT"
    done ;;
  latent-scalable)  # Choi & Bajić; the codec starts from the shipped hyperprior of the same quality
    for q in $(DEFAULT_RATES="1 2 3" rates "$@"); do
      train method=latent-scalable 'method.rates=[1,2,3]' "${TASK_ARGS[@]}" rate="$q" crop=128 \
        recipe.stages.joint.steps=${STEPS:-400} recipe.stages.joint.batch_size=8 recipe.feature_weight=$GAMMA \
        recipe.init_from="$ckpt/bmshj2018-hyperprior-mse-q$q.pth"
    done ;;
  feature-stream)  # the task's features at its default cut through a learned bottleneck beside JPEG
    for q in $(DEFAULT_RATES="1 2 3" rates "$@"); do
      train method=feature-stream 'method.rates=[1,2,3]' "${TASK_ARGS[@]}" rate="$q" crop=$SPLIT_CROP \
        recipe.stages.bottleneck.steps=${STEPS:-400} recipe.stages.bottleneck.batch_size=8 \
        recipe.stages.bottleneck.lr=1.0e-3  # a fresh bottleneck at the recipe's 1e-4 barely moves in 400 steps
    done ;;
  compressed-domain)  # a task head on the shipped hyperprior's latent (the codec stays as shipped: head only)
    for q in $(DEFAULT_RATES="1 2 3" rates "$@"); do
      train method=compressed-domain 'method.rates=[1,2,3]' "${TASK_ARGS[@]}" rate="$q" crop=$SPLIT_CROP \
        recipe.stages.head.steps=${STEPS:-400} recipe.stages.head.batch_size=8 '~recipe.stages.joint'
    done ;;
  sicmh)  # SICMH with ESPNet (its paper's task is segmentation), all four stages, ESPNet at the crop's size; the
    # paper's side / heads learning rates (1e-5, 1e-6) move nothing in a hundred steps: 1e-4 here, as its other stages
    for q in $(DEFAULT_RATES="1 2 3" rates "$@"); do
      train method=sicmh 'method.rates=[1,2,3]' task=espnet 'task.input_size=[128,256]' rate="$q" crop=128 \
        recipe.stages.side.steps=${SIDE_STEPS:-150} recipe.stages.heads.steps=${HEADS_STEPS:-100} \
        recipe.stages.coarse.steps=${COARSE_STEPS:-150} recipe.stages.fine.steps=${FINE_STEPS:-150} \
        recipe.stages.side.lr=1.0e-4 recipe.stages.heads.lr=1.0e-4 "recipe.init_encoder_from=$ckpt/bmshj2018-hyperprior-mse-q$q.pth"
    done ;;
  export)  # export METHOD TASK RATE ...: the runs' model.pt into checkpoints/<method>/<task>/rate-<r>/
    # (EXPORT_AS=icmh for EAC's runs: the modules of one task are ICMH's)
    m="${1:?export METHOD TASK RATE ...}"; t="${2:?task}"; shift 2
    for q in "$@"; do
      "$PY" -m bench train-export "$RUNS/$m/$t/rate-$q/model.pt" "checkpoints/${EXPORT_AS:-$m}/$t/rate-$q"
    done ;;
  *) echo "unknown method $method" >&2; exit 2 ;;
esac
