#!/usr/bin/env bash
# Rebuilds results/leaderboards/tiny-cpu from real runs of every method on the tiny-cpu pool.
# About 30 minutes on 2 CPU cores. Each run gets its own generation cache, so no run reuses
# another's generations and the cost columns stay comparable; a killed run resumes.
# Needs SYMOE_DATA_DIR and the committed tiny-cpu profiles (symoe profile ... --limit 20).
set -euo pipefail
: "${SYMOE_DATA_DIR:?point SYMOE_DATA_DIR at the authors data folder}"
LIMIT=${LIMIT:-10}
TOKS=${TOKS:-256}
TASKS=${TASKS:-symoe_gpqa,symoe_aime24}
OUT=${OUT:-results/tiny-cpu}
BOARD=${BOARD:-results/leaderboards/tiny-cpu}

run() {  # run NAME MODEL MODEL_ARGS
  lm_eval --model "$2" --model_args "$3,max_gen_toks=$TOKS,cache_dir=$OUT/$1/cache" \
    --tasks "$TASKS" --limit "$LIMIT" --batch_size 8 --output_path "$OUT/$1" --log_samples
}

run smollm2-135m symoe_expert pool=tiny-cpu,expert=smollm2-135m
run qwen2.5-coder-0.5b symoe_expert pool=tiny-cpu,expert=qwen2.5-coder-0.5b
run symoe symoe pool=tiny-cpu
run symoe-task-routing symoe pool=tiny-cpu,routing=task
run moa moa pool=tiny-cpu,layers=2
run discussion discussion pool=tiny-cpu,rounds=1

symoe leaderboard "$OUT" --baseline expert=qwen2.5-coder-0.5b --out "$BOARD" \
  --note "tiny-cpu pool, first $LIMIT test questions per task, max_gen_toks=$TOKS, seed 0, built by benchmarks/tiny_cpu_leaderboard.sh."
