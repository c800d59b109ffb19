"""Reference peer: the multisensory separation U-Net (shared/spec/multisensory.md §2.2, audio-only
"unet_pit" variant) train step in PyTorch eager, CPU: forward, PIT L1 loss, backward,
SGD-momentum update. Same structure as avjax.models.sep_unet; written for speed ratios only.

Usage: python sep_unet_torch.py [--batch 2] [--frames 128] [--freqs 1024] [--steps 5] [--forward_only]
Prints one JSON line: step_s (median train step after one warm-up step) and fwd_s (median
inference forward, eval-mode BN, no grad).
"""
import argparse, json, time
import torch, torch.nn as nn, torch.nn.functional as F

ENC = [(2, 64, (1, 2)), (64, 128, (1, 2)), (128, 256, 2), (256, 512, 2)] + [(512, 512, 2)] * 5
DEC = [(512, 512, 2), (1024, 512, 2), (1024, 512, 2), (1024, 512, 2), (1024, 512, 2),
       (1024, 256, 2), (512, 128, 2), (256, 64, (1, 2))]


def pair(s):
    return s if isinstance(s, tuple) else (s, s)


class SameConv(nn.Module):
    """4×4 conv with TF "SAME" padding (the extra pad row goes at the end)."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.stride = pair(stride)
        self.conv = nn.Conv2d(i, o, 4, self.stride, bias=False)

    def forward(self, x):
        pads = []
        for size, s in zip(reversed(x.shape[2:]), reversed(self.stride)):
            out = -(-size // s)
            total = max((out - 1) * s + 4 - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


class SameDeconv(nn.Module):
    """4×4 transposed conv with out = in·stride (crop (k-s)//2 at the start, the rest at the end)."""

    def __init__(self, i, o, stride, bias=False):
        super().__init__()
        self.stride = pair(stride)
        self.conv = nn.ConvTranspose2d(i, o, 4, self.stride, bias=bias)

    def forward(self, x):
        y = self.conv(x)
        sl = [slice(None), slice(None)]
        for size, s in zip(x.shape[2:], self.stride):
            lo = (4 - s) // 2
            sl.append(slice(lo, lo + size * s))
        return y[tuple(sl)]


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=1 - 0.9997)


class SepUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList([nn.Sequential(SameConv(i, o, s), bn(o)) for i, o, s in ENC])
        self.dec = nn.ModuleList([nn.Sequential(SameDeconv(i, o, s), bn(o)) for i, o, s in DEC])
        self.fg = SameDeconv(128, 2, (1, 2), bias=True)
        self.bg = SameDeconv(128, 2, (1, 2), bias=True)

    def forward(self, x):
        skips = []
        for e in self.enc:
            x = e(x)
            skips.append(x)
            x = F.leaky_relu(x, 0.2)
        x = skips.pop()
        for i, d in enumerate(self.dec):
            if i:
                x = torch.cat([x, skips.pop()], 1)
            x = d(F.relu(x))
        x = F.relu(torch.cat([x, skips.pop()], 1))
        return torch.tanh(self.fg(x)), torch.tanh(self.bg(x))


def pit_loss(fg, bg, tgt):
    l1 = lambda a, b: (a - b).abs().mean(dim=(1, 2))
    term = lambda p, t: l1(p[:, 0], t[:, 0]) + 0.01 * l1(p[:, 1], t[:, 1])
    t0, t1 = tgt[:, 0], tgt[:, 1]
    return torch.minimum(term(fg, t0) + term(bg, t1), term(fg, t1) + term(bg, t0)).mean()


def median(ts):
    ts = sorted(ts)
    return ts[len(ts) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--freqs", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--forward_only", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    m = SepUNet()
    x = torch.randn(a.batch, 2, a.frames, a.freqs) * 0.5
    tgt = torch.randn(a.batch, 2, 2, a.frames, a.freqs) * 0.5
    res = {"impl": "torch", "model": "sep_unet", "threads": torch.get_num_threads(),
           "batch": a.batch, "frames": a.frames, "freqs": a.freqs}
    if not a.forward_only:
        opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = pit_loss(*m(x), tgt)
            loss.backward()
            opt.step()

        step()
        ts = []
        for _ in range(a.steps):
            t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
        res["step_s"] = median(ts)
    m.eval()
    with torch.no_grad():
        m(x)
        ts = []
        for _ in range(a.steps):
            t = time.perf_counter(); m(x); ts.append(time.perf_counter() - t)
    res["fwd_s"] = median(ts)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
