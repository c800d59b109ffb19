"""Speed of avjax's heaviest networks on this machine, as a ratio to their PyTorch peers.

    python -m avjax.bench [asmp_unet] [shift] [sep_unet] [--steps N] [--no-torch] [--per-layer]
                          [--json PATH] [--peers_dir DIR] [--impl fast|reference]
                          [--input [--input-only] [--input-clips N] [--cache-dir DIR]]

For each network: the jitted train step (forward, loss, backward, SGD-momentum update; median
after warm-up) and the inference forward (eval-mode BatchNorm), the analytic model FLOPs (2·MACs
from the layer shapes; train ≈ 3× forward), the achieved GFLOP/s and its fraction of this
machine's f32 matmul rate measured in the same run, and — when torch is importable — the peer's
times measured right after avjax's, as avjax/torch (≤ 1.0 means avjax is at least as fast).
Peers: ../shared/bench/*.py (train step; forward via bench_peers/forward_torch.py) and
avjax/bench_peers/*.py. Each timing carries the CPU load other processes put on the machine
meanwhile ("busy" column), since only a quiet machine gives trustworthy ratios.

``--input`` adds, per task config in avjax.bench_input.INPUT_CONFIGS (shift, ASMP; paper size),
the input pipeline's throughput (records -> device batch) against the task's train step at the
same example size: "input can feed N x the step's consumption". A task whose module is not
written yet is skipped with a note.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax

from avjax import bench_input, bench_layers, bench_nets
from avjax.bench_timing import foreign_load_now, matmul_peak_gflops, time_fn, wait_for_quiet
from avjax.models import layers


def run_peer(argv: list[str], timeout: float = 1800) -> dict:
    """Run a peer script; its last stdout line is one JSON object. Adds the foreign load seen."""
    wait_for_quiet(timeout=30)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"peer {' '.join(argv)} failed: {p.stderr.strip().splitlines()[-1:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.time() - t0
    return out


def input_pipeline_rate(make_iterator, n_batches: int = 20, warmup: int = 2) -> float:
    """Batches per second from records to a device batch: ``next()`` on the iterator that
    ``make_iterator()`` returns, then jax.device_put and wait; e.g.
    ``lambda: iter(task.train_data(0, 1, batch))`` (``--input``: avjax.bench_input)."""
    it = make_iterator()
    for _ in range(warmup):
        jax.block_until_ready(jax.device_put(next(it)))
    t0 = time.perf_counter()
    for _ in range(n_batches):
        jax.block_until_ready(jax.device_put(next(it)))
    return n_batches / (time.perf_counter() - t0)


def bench_net(name: str, args, peak: float) -> dict:
    net = bench_nets.NETS[name]()
    calls = bench_layers.record(net.model, net.inputs, {"train": False})
    fwd_flops = sum(c.flops for c in calls)
    variables = bench_nets.init_variables(net)
    step, forward, state = bench_nets.make_steps(net, variables)
    t0 = time.perf_counter()
    state, loss = step(state)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    box = [state]

    def one_step():
        box[0], l = step(box[0])
        return l

    wait_for_quiet(timeout=30)
    t_step = time_fn(one_step, steps=args.steps)
    params, rest, _ = box[0]
    t_fwd = time_fn(forward, {"params": params, **rest}, steps=args.steps)
    res = {"name": name, "fwd_gflop": fwd_flops / 1e9, "train_gflop": 3 * fwd_flops / 1e9,
           "compile_s": compile_s, "notes": net.notes,
           "train": {"s": t_step.seconds, "busy": t_step.foreign_cores},
           "forward": {"s": t_fwd.seconds, "busy": t_fwd.foreign_cores}}
    for what, flops in (("train", 3 * fwd_flops), ("forward", fwd_flops)):
        r = res[what]
        r["gflops"] = flops / r["s"] / 1e9
        r["peak_frac"] = r["gflops"] / peak
    del box, state, params, rest
    if args.torch:
        peers = Path(args.peers_dir)
        try:
            ps = run_peer(net.peer_step(peers))
            res["train"].update(torch_s=ps["step_s"], ratio=res["train"]["s"] / ps["step_s"])
            pf = ps if "fwd_s" in ps else run_peer(net.peer_forward(peers))
            res["forward"].update(torch_s=pf["fwd_s"], ratio=res["forward"]["s"] / pf["fwd_s"])
        except (RuntimeError, subprocess.TimeoutExpired, FileNotFoundError, ValueError) as e:
            res["torch_error"] = str(e)
    if args.per_layer:
        res["layers"] = per_layer(calls, peak, args)
    return res


def per_layer(calls, peak: float, args) -> list[dict]:
    """Each conv / pool / BN layer's own forward and forward+backward time at its real shape."""
    rows, cache = [], {}
    for c in calls:
        if c.signature not in cache:
            wait_for_quiet(timeout=10)
            cache[c.signature] = bench_layers.time_layer(c, args.impl)
        f, fb = cache[c.signature]
        rows.append({"name": c.name, "kind": c.kind, "x": list(c.x_shape),
                     "kernel": list(c.kernel_shape), "strides": list(c.strides),
                     "gflop": c.flops / 1e9, "fwd_s": f, "fwd_bwd_s": fb,
                     "fwd_peak": c.flops / f / 1e9 / peak if c.flops else None,
                     "fwd_bwd_peak": 3 * c.flops / fb / 1e9 / peak if c.flops else None})
    return rows


def print_table(results: list[dict], peak: float) -> None:
    print(f"\nmatmul peak (2048² f32 via XLA, this run): {peak:.1f} GFLOP/s")
    hdr = (f"{'network':10s} {'pass':8s} {'avjax s':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'peak':>5s}"
           f" {'torch s':>9s} {'ratio':>6s} {'busy':>5s}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        if "skipped" in r:
            print(f"{r['name']:10s} skipped: {r['skipped']}")
            continue
        for what in ("train", "forward"):
            d = r[what]
            flops = r["train_gflop"] if what == "train" else r["fwd_gflop"]
            t = f"{d['torch_s']:9.3f} {d['ratio']:6.2f}" if "torch_s" in d else f"{'-':>9s} {'-':>6s}"
            print(f"{r['name']:10s} {what:8s} {d['s']:9.3f} {flops:7.1f} {d['gflops']:8.1f}"
                  f" {d['peak_frac']:5.2f} {t} {d['busy']:5.2f}")
        if "torch_error" in r:
            print(f"{'':10s} torch peer failed: {r['torch_error']}")
        for n in r.get("notes", []):
            print(f"{'':10s} note: {n}")
    for r in results:
        if "layers" not in r:
            continue
        print(f"\n{r['name']}: per layer (fwd / fwd+bwd ms, fraction of matmul peak)")
        for l in r["layers"]:
            frac = (f"{l['fwd_peak']:5.2f} {l['fwd_bwd_peak']:5.2f}" if l["fwd_peak"] is not None
                    else f"{'':5s} {'':5s}")
            print(f"  {l['name']:16s} {l['kind']:14s} {str(tuple(l['x'])):24s} "
                  f"{str(tuple(l['kernel'])):20s} {l['fwd_s'] * 1e3:8.1f} {l['fwd_bwd_s'] * 1e3:8.1f} {frac}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m avjax.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("nets", nargs="*", metavar="NET",
                   help=f"networks to time, of {', '.join(bench_nets.NETS)} (default: all)")
    p.add_argument("--steps", type=int, default=5, help="timed steps after warm-up (median)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch peers")
    p.add_argument("--per-layer", action="store_true", help="time every conv/pool/BN layer too")
    p.add_argument("--json", type=Path, help="write all numbers to this file")
    p.add_argument("--peers_dir", default=str(bench_nets.shared_peers_dir()),
                   help="folder of the shared PyTorch peers (default: ../shared/bench)")
    p.add_argument("--impl", choices=layers.IMPLS, default=None,
                   help="conv formulation (default: per platform, see avjax.models.layers)")
    p.add_argument("--input", action="store_true",
                   help="also time each task's input pipeline against its train step")
    p.add_argument("--input-only", action="store_true", help="only the --input measurement")
    p.add_argument("--input-tasks", nargs="*", default=list(bench_input.INPUT_CONFIGS),
                   help="task labels of avjax.bench_input.INPUT_CONFIGS for --input")
    p.add_argument("--input-clips", type=int, default=8,
                   help="synthetic clips generated (once, cached) for --input")
    p.add_argument("--input-batch", type=int, default=4, help="pipeline batch for --input")
    p.add_argument("--cache-dir", default=None,
                   help="synthetic data cache for --input (default: data.cache_dir / ~/.cache)")
    args = p.parse_args(argv)
    # (not argparse choices: Python 3.11 checks a nargs="*" default list against them as a whole)
    bad = [n for n in args.nets if n not in bench_nets.NETS]
    if bad:
        p.error(f"unknown network(s) {bad}; choose from {list(bench_nets.NETS)}")
    args.nets = args.nets or list(bench_nets.NETS)
    if args.input_only:
        args.input, args.nets = True, []
    if args.torch and importlib.util.find_spec("torch") is None:
        print("torch is not importable: timing avjax only (pip install torch for ratios)")
        args.torch = False
    layers.set_default_impl(args.impl)
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"conv formulation: {layers.resolve_impl()}; other processes now use "
          f"{foreign_load_now():.2f} cores")
    peak = matmul_peak_gflops()
    results = []
    for name in args.nets:
        print(f"... {name}", flush=True)
        try:
            results.append(bench_net(name, args, peak))
        except ModuleNotFoundError as e:
            print(f"skipping {name}: {e}")
            results.append({"name": name, "skipped": str(e)})
    inputs = []
    for label in (args.input_tasks if args.input else []):
        print(f"... input pipeline: {label}", flush=True)
        try:
            inputs.append(bench_input.measure(label, bench_input.INPUT_CONFIGS[label],
                                              clips=args.input_clips, input_batch=args.input_batch,
                                              cache_dir=args.cache_dir))
        except ModuleNotFoundError as e:
            print(f"skipping input pipeline of {label}: {e}")
            inputs.append({"task": label, "skipped": str(e)})
    peak_end = matmul_peak_gflops()
    if results:
        print_table(results, peak)
    if inputs:
        bench_input.print_input_table(inputs)
    print(f"(matmul peak re-measured at the end: {peak_end:.1f} GFLOP/s)")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "peak_gflops_end": peak_end,
                                         "jax": jax.__version__, "impl": layers.resolve_impl(),
                                         "results": results, "input": inputs},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
