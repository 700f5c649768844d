#!/usr/bin/env bash
# Rebuilds results/leaderboards/specialists: Symbolic-MoE on the specialists pool against random
# and task-level routing and every single expert, on the 100 symoe_skills test questions, with the
# committed profile (symoe profile --pool specialists --task symoe_skills). Each run has its own
# generation cache, so no run reuses another's generations and the cost columns compare; a killed
# run resumes. RUNS picks some (default: all, in this order); CACHE=DIR gives every run that one
# cache instead (faster, but the load and wall-time columns then count only what was not cached).
set -euo pipefail
OUT=${OUT:-results/specialists}
BOARD=${BOARD:-results/leaderboards/specialists}
RUNS=${RUNS:-"symoe symoe-calibrated symoe-random symoe-task qwen2.5-coder-0.5b smollm2-addition smollm2-reversal smollm2-sorting smollm2-comparison smollm2-135m"}

run() {  # run NAME MODEL MODEL_ARGS
  lm_eval --model "$2" --model_args "pool=specialists,$3cache_dir=${CACHE:-$OUT/$1/cache}" \
    --tasks symoe_skills --batch_size 8 --output_path "$OUT/$1" --log_samples
}

for name in $RUNS; do
  case "$name" in
    symoe) run symoe symoe "" ;;
    symoe-random) run symoe-random symoe "routing=random," ;;
    symoe-task) run symoe-task symoe "routing=task," ;;
    symoe-calibrated) run symoe-calibrated symoe "routing=calibrated," ;;
    *) run "$name" symoe_expert "expert=$name," ;;
  esac
done

symoe leaderboard "$OUT" --baseline expert=qwen2.5-coder-0.5b --out "$BOARD" \
  --note "specialists pool, the 100 symoe_skills test questions, seed 0, built by benchmarks/specialists_leaderboard.sh."
