"""What the symoe_eval.pth start-up hook costs a Python program that never uses lm-eval.

Runs `python -c pass` repeatedly with the hook on and off (SYMOE_EVAL_NO_HOOK=1), interleaved,
and prints the medians, their difference and ratio, and the hook's own import time.
Usage: python benchmarks/import_cost.py [--runs 40]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def one_run(env) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    on_env = {k: v for k, v in os.environ.items() if k != "SYMOE_EVAL_NO_HOOK"}
    off_env = {**on_env, "SYMOE_EVAL_NO_HOOK": "1"}
    on, off = [], []
    for _ in range(args.runs):
        on.append(one_run(on_env))
        off.append(one_run(off_env))
    on_ms, off_ms = statistics.median(on) * 1000, statistics.median(off) * 1000
    trace = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=on_env,
                           capture_output=True, text=True).stderr
    own = [int(m.group(1)) for m in re.finditer(r"import time:\s+\d+ \|\s+(\d+) \|\s+symoe_eval", trace)]
    print(f"python -c pass, median of {args.runs}: hook on {on_ms:.1f} ms, hook off {off_ms:.1f} ms")
    print(f"difference {on_ms - off_ms:+.1f} ms, ratio on/off {on_ms / off_ms:.3f}")
    print(f"symoe_eval modules imported at start-up: {len(own)}, cumulative {max(own, default=0) / 1000:.2f} ms")


if __name__ == "__main__":
    main()
