"""One train-step gradient is the same computation on 1 device and on an 8-device mesh."""
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, xla_flags

SCRIPT = textwrap.dedent("""
    from concurrent.futures import ThreadPoolExecutor
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from avjax import tasks
    from avjax.config_cli import apply_overrides, load_config_file
    cfg = load_config_file("configs/shift.py:local")
    apply_overrides(cfg, {"model.width": "0.125", "data.num_frames": "4", "data.crop_size": "32"})
    task = tasks.load(cfg)
    rng = np.random.default_rng(0)
    shapes = task.example_batch(8)
    batch = {"video": rng.integers(0, 255, shapes["video"].shape).astype(np.uint8),
             "audio": (rng.standard_normal(shapes["audio"].shape) * 0.1).astype(np.float32)}
    v = jax.jit(task.init)(jax.random.key(0), batch)   # one program, not ~25 s of eager ops
    params, state = v["params"], {k: x for k, x in v.items() if k != "params"}
    grad = jax.grad(lambda p, s, b: task.loss(p, s, b, None, True)[0])
    def compiled(n):
        mesh = Mesh(np.array(jax.devices()[:n]).reshape(n, 1), ("data", "model"))
        rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P(("data", "model")))
        f = jax.jit(grad, in_shardings=(rep, rep, rows), out_shardings=rep)
        args = (jax.device_put(params, rep), jax.device_put(state, rep),
                jax.device_put(batch, rows))
        return f.lower(*args).compile(), args
    # The two programs compile at the same time (XLA compiles outside the GIL): 2 cores, 2 jobs.
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(compiled, n) for n in (1, 8)]
        out = [jax.tree.leaves(f(*args)) for f, args in (j.result() for j in jobs)]
    worst = 0.0
    for a, b in zip(*out):
        a, b = np.asarray(a), np.asarray(b)
        if np.abs(a).max() > 1e-5:   # biases right before a BN have zero gradient: only noise
            worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
    print(worst)
""")


def test_gradient_same_on_one_and_eight_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=8"))
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.strip().splitlines()[-1]) < 1e-4
