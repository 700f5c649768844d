"""Symbolic-MoE's own parts, which its method (``methods/symoe.py``) and ``symoe profile`` use:
skills (the keyword model's annotations), profiles (per-task expert profiles and their validation
records), profiling (building a profile), routing (routers that recruit experts for a question)
and aggregation (the aggregator's prompts, context fitting and the consensus skip)."""
