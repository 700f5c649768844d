"""lm-eval model classes, registered lazily by symoe_eval.plugin."""
