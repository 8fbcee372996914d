#!/usr/bin/env bash
# GPU acceptance in one command: on a CUDA machine with a prepared Python and no network, measure the built-in
# trainer at real size and write every figure as JSON under $OUT, within 10 minutes on an H100.
#
#   bash bench/gpu_acceptance.sh            # run (OUT defaults to ./gpu-acceptance-out)
#   bash bench/gpu_acceptance.sh --dry-run  # print the plan and the time budgets; needs no GPU, runs nothing
#
# Stages, each under its own time budget (seconds) and never past the total deadline: a stage that would not
# fit in what is left is skipped and says so in $OUT/acceptance.json ("stopping early rather than overrunning").
#   env        nvidia-smi and torch's view of the GPU                           -> env.json
#   trainer    bench/gpu_trainer.py, real-size transformer, 512 and 1024 px, checkpointing on/off, compile on/off,
#              bf16 and float8 (float8 is never compiled), batch 1           -> gpu_trainer.json (row by row)
#   write      bench/realsize.py --stages write: the random-weight real-size diffusers folder (random values drawn
#              on the GPU)                                                     -> realsize.json
#   bf16       bench/realsize.py --stages bf16: `zlt train` on it (256 px, 2 steps, rank 16, checkpointing)
#   float8     bench/realsize.py --stages float8: the same with float8 storage
#   generate   bench/realsize.py --stages generate: `zlt generate`, one 256 px image in 2 steps
# Environment: PYTHON (default .venv/bin/python when present, else python3), OUT, WORK (scratch for the 20 GB
# model folder, default /tmp/zlt-realsize), TOTAL_S (default 570), and per stage BUDGET_<STAGE>_S.
# docs/performance.md says how to run it through the device tool in one call.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-acceptance-out}"
WORK="${WORK:-/tmp/zlt-realsize}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
TOTAL_S="${TOTAL_S:-570}"
STAGES=(env trainer write bf16 float8 generate)
declare -A BUDGET=(
  [env]="${BUDGET_ENV_S:-30}"
  [trainer]="${BUDGET_TRAINER_S:-240}"
  [write]="${BUDGET_WRITE_S:-90}"
  [bf16]="${BUDGET_BF16_S:-75}"
  [float8]="${BUDGET_FLOAT8_S:-75}"
  [generate]="${BUDGET_GENERATE_S:-60}"
)
declare -A MIN=([env]=5 [trainer]=60 [write]=45 [bf16]=40 [float8]=40 [generate]=30)  # not worth starting below

cmd_for() {
  local rs="$PYTHON $ROOT/bench/realsize.py --scale real --device cuda --out $WORK --json $OUT/realsize.json"
  case "$1" in
    env) echo "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; $PYTHON -c 'import torch,json; print(json.dumps({\"torch\": torch.__version__, \"cuda\": torch.cuda.is_available(), \"device\": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))'" ;;
    trainer) echo "$PYTHON $ROOT/bench/gpu_trainer.py --resolutions 512,1024 --steps 5 --warmup 2 --json $OUT/gpu_trainer.json" ;;
    write) echo "$rs --stages write" ;;
    bf16|float8|generate) echo "$rs --stages $1 --budget-s $2" ;;
  esac
}

if [[ "${1:-}" == "--dry-run" ]]; then
  echo "gpu acceptance plan: total budget ${TOTAL_S} s (one device-tool call has 600 s); figures as JSON under ${OUT}"
  sum=0
  for s in "${STAGES[@]}"; do
    sum=$((sum + BUDGET[$s]))
    printf '  %-9s budget %4s s (skipped when under %s s are left)  %s\n' "$s" "${BUDGET[$s]}" "${MIN[$s]}" "$(cmd_for "$s" $((BUDGET[$s] - 10)))"
  done
  echo "sum of stage budgets: ${sum} s; the run stops at ${TOTAL_S} s whatever is left"
  echo "no GPU figure is written by --dry-run"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "usage: bash bench/gpu_acceptance.sh [--dry-run]" >&2
  exit 2
fi

mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ZLT_HOME="$WORK/home-zlt"
START=$(date +%s)
SUMMARY="$OUT/acceptance.json"
echo '{"stages": [' > "$SUMMARY"
first=1
record() {  # stage status seconds note
  [[ $first -eq 1 ]] || echo ',' >> "$SUMMARY"
  first=0
  printf '{"stage": "%s", "status": "%s", "seconds": %s, "note": "%s"}' "$1" "$2" "$3" "$4" >> "$SUMMARY"
}
for s in "${STAGES[@]}"; do
  left=$((TOTAL_S - ($(date +%s) - START)))
  budget=${BUDGET[$s]}
  (( budget > left )) && budget=$left
  if (( budget < MIN[$s] )); then
    echo "== $s: skipped, ${left} s left (needs ${MIN[$s]} s)"
    record "$s" skipped 0 "time budget: ${left} s left"
    continue
  fi
  echo "== $s (budget ${budget} s, ${left} s left)"
  t0=$(date +%s)
  if [[ "$s" == env ]]; then
    timeout "$budget" bash -c "$(cmd_for env)" > "$OUT/env.txt" 2>&1
    rc=$?
  else
    # the stage's own budget is also passed down (realsize stops its zlt command) so its JSON still gets written;
    # one log for all stages: the device tool brings back at most 8 files from $OUT
    echo "== $s" >> "$OUT/acceptance.log"
    timeout -k 10 "$budget" bash -c "$(cmd_for "$s" $((budget - 10)))" 2>&1 | tee -a "$OUT/acceptance.log" | tail -n 40
    rc=${PIPESTATUS[0]}
  fi
  dt=$(($(date +%s) - t0))
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status="failed rc=$rc" ;;
  esac
  echo "== $s: $status in ${dt} s"
  record "$s" "$status" "$dt" ""
done
printf '\n], "total_s": %s}\n' "$(($(date +%s) - START))" >> "$SUMMARY"
cat "$SUMMARY"
