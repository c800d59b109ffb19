"""ASMP 7-layer U-Net: stage shapes per spec/asmp.md §5, and the same numbers as a PyTorch build."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from avjax.models.asmp_unet import ASMPUNet

# spec table at 256×256 input: (stage, channels, spatial)
STAGES = [("c1", 64, 128), ("c2", 128, 64), ("c3", 256, 32), ("c4", 512, 16), ("c5", 512, 8),
          ("c6", 512, 4), ("c7", 512, 2), ("u1", 512, 4), ("u2", 512, 8), ("u3", 512, 16),
          ("u4", 256, 32), ("u5", 128, 64), ("u6", 64, 128), ("u7", 1, 256)]


def test_stage_shapes_match_spec():
    m = ASMPUNet()
    x, cond = jnp.zeros((2, 256, 256, 1)), jnp.zeros((2, 512))

    def run():
        v = m.init(jax.random.key(0), x, cond, train=False)
        return m.apply(v, x, cond, train=False, capture_intermediates=True, mutable=["intermediates"])

    out, state = jax.eval_shape(run)
    assert out.shape == (2, 256, 256, 1)
    inter = state["intermediates"]
    for name, ch, sp in STAGES:
        assert inter[name]["__call__"][0].shape == (2, sp, sp, ch), name


def _torch_unet(torch, ngf=64):
    nn = torch.nn

    def down(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2))

    def up(i, o):
        return nn.Sequential(nn.ConvTranspose2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.ReLU())

    class UNet7(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [1, ngf, ngf * 2, ngf * 4] + [ngf * 8] * 4
            self.downs = nn.ModuleList([down(ch[i], ch[i + 1]) for i in range(7)])
            self.ups = nn.ModuleList([up(1024, 512), up(1024, 512), up(1024, 512), up(1024, 256),
                                      up(512, 128), up(256, 64)])
            self.last = nn.ConvTranspose2d(128, 1, 4, 2, 1)

        def forward(self, x, cond):
            skips = []
            for d in self.downs:
                x = d(x)
                skips.append(x)
            c = cond[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([c, x], 1)
            for i, u in enumerate(self.ups):
                x = torch.cat([u(x), skips[-(i + 2)]], 1)
            return torch.sigmoid(self.last(x))

    return UNet7()


def _copy_weights(torch_net, params):
    t = lambda a: np.asarray(a)
    blocks = [(f"c{i + 1}", seq[0], seq[1], False) for i, seq in enumerate(torch_net.downs)]
    blocks += [(f"u{i + 1}", seq[0], seq[1], True) for i, seq in enumerate(torch_net.ups)]
    for name, conv, bn, transpose in blocks:
        k = t(params[name]["conv"]["kernel"])
        conv.weight.data[:] = _torch_tensor(k.transpose((2, 3, 0, 1) if transpose else (3, 2, 0, 1)))
        conv.bias.data[:] = _torch_tensor(t(params[name]["conv"]["bias"]))
        bn.weight.data[:] = _torch_tensor(t(params[name]["bn"]["scale"]))
        bn.bias.data[:] = _torch_tensor(t(params[name]["bn"]["bias"]))
    torch_net.last.weight.data[:] = _torch_tensor(t(params["u7"]["conv"]["kernel"]).transpose(2, 3, 0, 1))
    torch_net.last.bias.data[:] = _torch_tensor(t(params["u7"]["conv"]["bias"]))


def _torch_tensor(a):
    import torch
    return torch.from_numpy(np.array(a, dtype=np.float32))


X = jax.random.normal(jax.random.key(1), (2, 128, 128, 1))
COND = jax.random.normal(jax.random.key(2), (2, 512))


@pytest.fixture(scope="module")
def variables():
    # 46M parameters: the "unsafe_rbg" key generates them ~10x faster on CPU than threefry.
    key = jax.random.key(0, impl="unsafe_rbg")
    return jax.jit(lambda k: ASMPUNet().init(k, X, COND, train=False))(key)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_matches_pytorch_build(impl, variables):
    torch = pytest.importorskip("torch")
    m, x, cond, v = ASMPUNet(impl=impl), X, COND, variables
    y, upd = jax.jit(lambda v: m.apply(v, x, cond, train=True, mutable=["batch_stats"]))(v)

    tn = _torch_unet(torch)
    _copy_weights(tn, v["params"])
    tn.train()
    with torch.no_grad():
        ty = tn(_torch_tensor(np.asarray(x).transpose(0, 3, 1, 2)), _torch_tensor(np.asarray(cond)))
    np.testing.assert_allclose(np.asarray(y), ty.numpy().transpose(0, 2, 3, 1), atol=1e-4, rtol=1e-4)
    # running statistics follow PyTorch's momentum-0.1 update
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["c3"]["bn"]["mean"]),
                               tn.downs[2][1].running_mean.numpy(), atol=1e-4, rtol=1e-4)


def test_init_follows_spec(variables):
    v = variables
    k = np.asarray(v["params"]["c4"]["conv"]["kernel"])
    g = np.asarray(v["params"]["c4"]["bn"]["scale"])
    assert abs(k.std() - 0.02) < 0.002 and abs(k.mean()) < 0.002
    assert abs(g.mean() - 1) < 0.01 and 0.01 < g.std() < 0.03
    assert np.all(np.asarray(v["params"]["c4"]["bn"]["bias"]) == 0)
