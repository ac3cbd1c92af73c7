"""Cost of margin bounds over a weight box: time (bounds, and bounds + backward) and peak memory per
method, for the native backend and for plain auto_LiRPA, measured side by side in one run.

Networks: MLP 784-100-100-10 (all 89,610 weights and biases boxed, ±1e-3, batch 256) and the paper's
Split-MNIST CNN (all 6,179 parameters boxed, batch 400). Inputs are random images; the specification
is the 9 margins ``f_y − f_j``. Each (network, backend, method) runs in a fresh process, so the peak
resident memory reported is that method's own. Results: ``benchmarks/results/bounds.md`` + ``.png``.

    python benchmarks/bounds.py            # about 5 minutes on 2 cores
    python benchmarks/bounds.py --quick    # native backend only
The last line is ``CROWN/IBP time ratio: X`` (native MLP, bounds without gradient).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
THREADS = 2
REPEATS = 5
LIRPA_CROWN_CHUNK = 16  # plain auto_LiRPA CROWN runs out of 24 GB at batch 256: measured in chunks


def _machine(threads: int = THREADS) -> str:
    """CPU, cores, torch threads and versions, for the header of a results table."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    from lirpa_lid.bounds.auto_lirpa import compat as autolirpa
    return (f"{cpu}, {os.cpu_count()} cores, {threads} torch thread(s), Python {platform.python_version()}, "
            f"torch {torch.__version__}, auto_LiRPA {autolirpa.source_version()}")


def _network(name: str):
    import torch
    from torch import nn
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
        x = torch.rand(256, 784)
    else:
        model = nn.Sequential(nn.Conv2d(1, 8, 5, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 5, padding=1), nn.ReLU(),
                              nn.Flatten(), nn.Linear(576, 10))
        x = torch.rand(400, 1, 28, 28)
    y = torch.randint(0, 10, (x.shape[0],))
    eye = torch.eye(10)
    C = eye[y].unsqueeze(1) - eye.unsqueeze(0)                       # [B, 10, 10], row y is zero
    keep = torch.ones(x.shape[0], 10, dtype=torch.bool)
    keep[torch.arange(x.shape[0]), y] = False
    C = C[keep].view(x.shape[0], 9, 10)
    return model.eval(), x, C


def worker(net_name: str, backend: str, method: str, grad: bool) -> dict:
    """One measurement in this process: median seconds over REPEATS runs after a warm-up, peak RSS."""
    import torch

    from lirpa_lid import Orthotope, bounded_network
    torch.set_num_threads(THREADS)
    model, x, C = _network(net_name)
    base = Orthotope.around(model, lower=1e-3)
    net = bounded_network(model, backend=backend)
    chunk = LIRPA_CROWN_CHUNK if (backend == "auto_lirpa" and method in ("CROWN", "alpha-CROWN")) else x.shape[0]
    repeats = 1 if chunk < x.shape[0] else REPEATS

    def run() -> tuple[float, float, float]:
        lower = {n: t.clone().requires_grad_(grad) for n, t in base.lower.items()}
        upper = {n: t.clone().requires_grad_(grad) for n, t in base.upper.items()}
        domain = base.with_offsets(lower, upper)
        widths, t_bounds, t_back = [], 0.0, 0.0
        for s in range(0, x.shape[0], chunk):
            t1 = time.perf_counter()
            b = net.compute_bounds(x[s:s + chunk], domain, C=C[s:s + chunk], method=method)
            t2 = time.perf_counter()
            if grad:
                (b.lower.sum() - b.upper.sum()).backward()
            t_bounds += t2 - t1
            t_back += time.perf_counter() - t2
            widths.append((b.upper - b.lower).detach())
        return t_bounds, t_back, float(torch.cat(widths).mean())

    if chunk == x.shape[0]:
        run()  # warm-up: tracing, allocator
    times = [run() for _ in range(repeats)]
    return {"bounds_s": statistics.median(t[0] for t in times), "backward_s": statistics.median(t[1] for t in times),
            "mean_width": times[0][2], "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "chunk": chunk}


def _measure(net: str, backend: str, method: str, grad: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", net, backend, method, str(int(grad))]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail[:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="native backend only")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        net, backend, method, grad = args.worker
        print(json.dumps(worker(net, backend, method, bool(int(grad)))))
        return 0

    plan = [("mlp", "native", m) for m in ("IBP", "CROWN-IBP", "CROWN", "alpha-CROWN")]
    plan += [("cnn", "native", m) for m in ("IBP", "CROWN-IBP", "CROWN")]
    if not args.quick:
        plan += [("mlp", "auto_lirpa", m) for m in ("IBP", "CROWN-IBP", "CROWN")]
    rows = []
    for net, backend, method in plan:
        for grad in (False, True):
            r = _measure(net, backend, method, grad)
            rows.append({"net": net, "backend": backend, "method": method, "grad": grad, **r})
            shown = r.get("error") or (f"{r['bounds_s']:.3f} s + backward {r['backward_s']:.3f} s, "
                                       f"{r['peak_rss_gb']:.2f} GB, width {r['mean_width']:.4g}")
            print(f"{net:4s} {backend:10s} {method:12s} grad={int(grad)}  {shown}", flush=True)

    def get(net, backend, method, grad, key="bounds_s"):
        for r in rows:
            if (r["net"], r["backend"], r["method"], r["grad"]) == (net, backend, method, grad) and key in r:
                return r[key]
        return float("nan")

    ratio = get("mlp", "native", "CROWN", False) / get("mlp", "native", "IBP", False)
    ratio_grad = ((get("mlp", "native", "CROWN", True) + get("mlp", "native", "CROWN", True, "backward_s"))
                  / (get("mlp", "native", "IBP", True) + get("mlp", "native", "IBP", True, "backward_s")))
    _write(rows, _machine(), ratio, ratio_grad)
    print(f"CROWN/IBP time ratio with gradient (bounds + backward): {ratio_grad:.2f}")
    print(f"CROWN/IBP time ratio: {ratio:.2f}")
    return 0


def _write(rows: list[dict], machine: str, ratio: float, ratio_grad: float) -> None:
    RESULTS.mkdir(exist_ok=True)
    lines = [f"Machine: {machine}.", "",
             "| network | backend | method | bounds (s) | bounds + backward (s) | peak memory (GB) | mean width |",
             "|---|---|---|---|---|---|---|"]
    by_key = {}
    for r in rows:
        by_key.setdefault((r["net"], r["backend"], r["method"]), {})[r["grad"]] = r
    for (net, backend, method), rs in by_key.items():
        plain, grad = rs.get(False, {}), rs.get(True, {})
        if "error" in plain or "error" in grad:
            lines.append(f"| {net} | {backend} | {method} | failed: {(plain.get('error') or grad.get('error'))} | | | |")
            continue
        note = ""
        if plain["chunk"] < (256 if net == "mlp" else 400):
            note = f" (in chunks of {plain['chunk']}: out of memory at full batch)"
        lines.append(f"| {net} | {backend} | {method}{note} | {plain['bounds_s']:.3f} | "
                     f"{grad['bounds_s'] + grad['backward_s']:.3f} | {max(plain['peak_rss_gb'], grad['peak_rss_gb']):.2f} | "
                     f"{plain['mean_width']:.4g} |")
    lines += ["", f"CROWN/IBP time ratio (native MLP, bounds): {ratio:.2f}; with gradient: {ratio_grad:.2f}."]
    (RESULTS / "bounds.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4))
        labels, values = [], []
        for (net, backend, method), rs in by_key.items():
            if "error" not in rs.get(True, {"error": 1}):
                labels.append(f"{net}\n{backend}\n{method}")
                values.append(rs[True]["bounds_s"] + rs[True]["backward_s"])
        ax.bar(range(len(values)), values)
        ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, fontsize=6)
        ax.set_ylabel("bounds + backward (s, log)")
        ax.set_title("Weight-box bounds: MLP 784-100-100-10 (batch 256), CNN (batch 400)")
        fig.tight_layout()
        fig.savefig(RESULTS / "bounds.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
