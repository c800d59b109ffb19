"""Forward-only (inference) time of a shared PyTorch peer, whose own script times only the train
step: imports the peer module by path, builds its network, and times m(inputs) in eval mode under
torch.no_grad(). Run as a subprocess so torch's threads never overlap avjax's timings.

Usage: python -m avjax.bench_peers.forward_torch {asmp_unet|shift} --peers_dir DIR [sizes]
Prints one JSON line with fwd_s (median over --steps after one warm-up call).
"""
import argparse, importlib.util, json, sys, time
from pathlib import Path


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=["asmp_unet", "shift"])
    p.add_argument("--peers_dir", required=True)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    sys.argv = sys.argv[:1]  # the peer modules read sys.argv at import
    import torch
    torch.manual_seed(0)
    d = Path(a.peers_dir)
    if a.model == "asmp_unet":
        mod = load(d / "asmp_unet_torch.py")
        b, s = a.batch or 4, a.size or 256
        m, args = mod.UNet7(), (torch.randn(b, 1, s, s), torch.randn(b, 512))
    else:
        mod = load(d / "shift_torch.py")
        b, s = a.batch or 1, a.size or 112
        n_audio = int(round(a.frames * 21000 / 29.97))
        m = mod.ShiftNet()
        args = (torch.randn(2 * b, 3, a.frames, s, s), torch.randn(2 * b, 2, n_audio, 1) * 0.1)
    m.eval()
    with torch.no_grad():
        m(*args)
        ts = []
        for _ in range(a.steps):
            t = time.perf_counter(); m(*args); ts.append(time.perf_counter() - t)
    ts.sort()
    print(json.dumps({"impl": "torch", "model": a.model, "threads": torch.get_num_threads(),
                      "fwd_s": ts[len(ts) // 2]}))


if __name__ == "__main__":
    main()
