#!/usr/bin/env bash
# Rebuilds results/leaderboards/specialists: Symbolic-MoE on the specialists pool (the paper's
# routing and routing=records, each also with aggregate=disagree) against random, task-level and
# calibrated routing, every single expert, Mixture-of-Agents over the four specialists and
# self-consistency (5 votes) of qwen2.5-coder-0.5b, on the 100 symoe_skills test questions, with
# the committed profile (symoe profile --pool specialists --task symoe_skills). Each run has its
# own generation cache, so no run reuses another's generations and the cost columns compare; a
# killed run resumes. RUNS picks some (default: all, in this order); CACHE=DIR gives every run
# that one cache instead (faster, but the load and wall-time columns then count only what was not
# cached).
set -euo pipefail
OUT=${OUT:-results/specialists}
BOARD=${BOARD:-results/leaderboards/specialists}
RUNS=${RUNS:-"symoe symoe-disagree symoe-records symoe-records-disagree symoe-calibrated symoe-random symoe-task moa qwen2.5-coder-0.5b qwen2.5-coder-0.5b-sc smollm2-addition smollm2-reversal smollm2-sorting smollm2-comparison smollm2-135m"}
SPECIALISTS="smollm2-addition|smollm2-reversal|smollm2-sorting|smollm2-comparison"

run() {  # run NAME MODEL MODEL_ARGS [TASK]
  lm_eval --model "$2" --model_args "pool=specialists,$3cache_dir=${CACHE:-$OUT/$1/cache}" \
    --tasks "${4:-symoe_skills}" --batch_size 8 --output_path "$OUT/$1" --log_samples
}

for name in $RUNS; do
  case "$name" in
    symoe) run symoe symoe "" ;;
    symoe-random) run symoe-random symoe "routing=random," ;;
    symoe-task) run symoe-task symoe "routing=task," ;;
    symoe-calibrated) run symoe-calibrated symoe "routing=calibrated," ;;
    symoe-disagree) run symoe-disagree symoe "aggregate=disagree," ;;
    symoe-records) run symoe-records symoe "routing=records," ;;
    symoe-records-disagree) run symoe-records-disagree symoe "routing=records,aggregate=disagree," ;;
    moa) run moa moa "proposers=$SPECIALISTS,layers=2," ;;
    *-sc) run "$name" symoe_expert "expert=${name%-sc}," symoe_skills_sc ;;
    *) run "$name" symoe_expert "expert=$name," ;;
  esac
done

symoe leaderboard "$OUT" --baseline "expert=qwen2.5-coder-0.5b) [symoe_skills]" --out "$BOARD" \
  --note "specialists pool, the 100 symoe_skills test questions, seed 0, built by benchmarks/specialists_leaderboard.sh."
