"""`make bench` (`python -m bench.run_all`): every speed benchmark in turn, then one summary.

Runs bench.encoders (Triton/ONNX Runtime/torch encoder throughput), bench.ingest (submit-to-READY throughput
against the bare frame encoder), bench.gateway (Search latency, stage shares, gateway overhead) and bench.query
(Search at concurrency 1/4/16 next to the bare Triton + Milvus calls, 3 runs of 400 pooled) and bench.chaos (120
submissions while worker children are killed and every server restarted: nothing lost), each as its own
process, one after another so they never share the CPU, all into one results folder. Then writes
`<results>/bench.md`: each benchmark's table under its command, with the machine and date.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS_DIR, machine

BENCHMARKS = ("encoders", "ingest", "gateway", "query", "chaos")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="benchmarks to run")
    parser.add_argument("--tiny", action="store_true", help="smoke run of each benchmark")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-going", action="store_true", help="run the rest when one benchmark fails")
    args = parser.parse_args(argv)
    extra = (["--tiny"] if args.tiny else []) + ["--results-dir", str(args.results_dir)]
    m = machine()
    sections = [f"# Benchmarks\n\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Date: {m['date']}.\n"]
    failed = []
    for name in args.only:
        argv_one = [sys.executable, "-m", f"bench.{name}", *extra]
        command = shlex.join(["python", *argv_one[1:]])
        print(f"== {command}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(argv_one)
        took = time.perf_counter() - started
        table = args.results_dir / f"{name}.md"
        if code != 0:
            failed.append(name)
            sections.append(f"## bench.{name}\n\n`{command}` failed with exit code {code} after {took:.0f} s.\n")
            if not args.keep_going:
                break
            continue
        body = table.read_text() if table.is_file() else "(no table written)"
        sections.append(f"## bench.{name}\n\nCommand: `{command}` ({took:.0f} s)\n\n{body}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    summary = args.results_dir / "bench.md"
    summary.write_text("\n".join(sections))
    print(f"wrote {summary}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
