"""A CPU shared with other jobs: OpenMP's spinning idle threads vs the passive policy the package sets.

Each figure is the median of one child process per repeat (alternating the
variants, so load hits all alike), quiet and beside ``--busy`` CPU-bound
processes (``while True: pass``):

* ``spin`` — libgomp's default, what torch did before: the child imports torch
  with ``OMP_WAIT_POLICY`` unset, so idle threads spin before they sleep;
* ``passive`` — what ``import segnet_domains`` now sets (``segnet_domains/_openmp.py``);
* ``short`` — passive with a short spin before sleeping (``GOMP_SPINCOUNT=10000``,
  about 0.1 ms by libgomp's own estimate): the usual middle ground, measured
  because on a quiet machine each sleep costs a wake-up at the next parallel
  region (about 65 µs in a 2-core Firecracker VM).

Two jobs: a training step of the demo's MRI model (SegNet 16…64, 8 slices of
128×128, Adam) and ``Segmenter.predict_proba`` of a 360×480 RGB frame with a
reduced SegNet 8…64 in the precision ``"auto"`` picks (bf16 on a CPU with
bf16 instructions where it measures faster). Torch uses its default thread
count (one per CPU).

Usage: ``python benchmarks/bench_shared_cpu.py [--busy 1] [--repeats 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import add_common_args, finish, median

CHILD = r"""
import os, sys, time
import torch  # loaded first: with OMP_WAIT_POLICY unset ("spin"), libgomp's own default
from segnet_domains import Segmenter, SegNet
from segnet_domains._openmp import passive_waiting

def med(fn, n):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]

torch.manual_seed(0)
net = SegNet(1, 2, (16, 32, 64, 64, 64))
x, y = torch.randn(8, 1, 128, 128), torch.randint(0, 2, (8, 128, 128))
opt = torch.optim.Adam(net.parameters(), 3e-3)
def step():
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
seg = Segmenter(SegNet(3, 12, (8, 16, 32, 64, 64)).eval(), device="cpu")
frame = torch.rand(3, 360, 480).numpy()
print(passive_waiting(), torch.get_num_threads(), med(step, 5), med(lambda: seg.predict_proba(frame), 5))
"""

VARIANTS = ("spin", "passive", "short")
#: The environment each variant adds to the child's (from which :func:`child` removes these variables).
VARIANT_ENV = {
    "spin": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "short": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
}


def child(variant: str) -> dict[str, float]:
    """One fresh process: seconds per training step and per frame under ``variant``."""
    unset = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in unset} | VARIANT_ENV[variant]
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    passive, threads, step, frame = out.stdout.split()
    if (passive == "True") != (variant != "spin"):
        raise SystemExit(f"{variant}: the child's wait policy is not what was asked ({passive})")
    return {"threads": int(threads), "step_s": float(step), "frame_s": float(frame)}


def measure(repeats: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for v in VARIANTS:
            runs[v].append(child(v))
    return {
        v: {k: median([r[k] for r in rs]) for k in ("step_s", "frame_s")} | {"threads": rs[0]["threads"]}
        for v, rs in runs.items()
    }


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside the loaded runs")
    ap.add_argument("--repeats", type=int, default=5)
    add_common_args(ap)
    args = ap.parse_args()
    if args.device != "cpu":
        raise SystemExit("bench_shared_cpu.py measures CPU threads: --device cpu only")
    res: dict = {"cpus": os.cpu_count(), "busy": args.busy}
    load = os.getloadavg()[0]
    res["quiet"] = measure(args.repeats)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        res["beside_busy"] = measure(args.repeats)
    finally:
        for h in hogs:
            h.kill()
    for cond in ("quiet", "beside_busy"):
        passive = res[cond]["passive"]
        for job, key in (("training step", "step_s"), ("predict_proba", "frame_s")):
            over = {v: res[cond][v][key] / passive[key] for v in ("spin", "short")}
            for v, ratio in over.items():
                res[cond][f"{key}_{v}_over_passive"] = round(ratio, 2)
            ms = "  ".join(f"{v} {res[cond][v][key] * 1000:6.0f} ms" for v in VARIANTS)
            print(f"{cond:12s} {job:14s} {ms}  spin/passive {over['spin']:.2f}  short/passive "
                  f"{over['short']:.2f}  ({passive['threads']} threads)", flush=True)  # fmt: skip
    return finish(args, res, load_before=load)


if __name__ == "__main__":
    main()
