"""The device-idle meter counts only the gaps in which no step was running."""
import threading
import time

from avjax.step_timing import DeviceIdleMeter


class _Step:
    """A stand-in for a dispatched step's output that finishes at a given time."""

    def __init__(self, done_at: float):
        self.done_at = done_at

    def block_until_ready(self):
        time.sleep(max(0.0, self.done_at - time.perf_counter()))
        return self


def test_gaps_between_steps_are_idle_and_queued_steps_are_not():
    meter = DeviceIdleMeter()
    try:
        # Three back-to-back steps of 50 ms dispatched at once: the device never waits.
        t = time.perf_counter()
        for i in range(3):
            meter.dispatched(_Step(t + 0.05 * (i + 1)))
        meter.sync()
        assert meter.take_idle() < 0.01
        # Steps dispatched 80 ms after the previous one finished: 2 gaps of ~80 ms.
        for _ in range(3):
            end = time.perf_counter() + 0.02
            meter.dispatched(_Step(end))
            meter.sync()
            time.sleep(0.08)
        idle = meter.take_idle()
        assert 0.14 < idle < 0.25, idle
        assert meter.take_idle() == 0.0
        # After restart the pause before the next step is not counted.
        meter.restart()
        time.sleep(0.05)
        meter.dispatched(_Step(time.perf_counter()))
        meter.sync()
        assert meter.take_idle() < 0.01
    finally:
        meter.close()
    assert not any(th.name == "device-idle-meter" and th.is_alive() for th in threading.enumerate())


def test_real_device_steps():
    """With jitted steps: queued back-to-back steps leave no idle time; a host pause between a
    finished step and the next dispatch is counted."""
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda x: jnp.tanh(x @ x) / 64.0)
    x = jnp.ones((256, 256))
    f(x).block_until_ready()
    meter = DeviceIdleMeter()
    try:
        y = x
        for _ in range(5):
            y = f(y)
            meter.dispatched(y)
        meter.sync()
        assert meter.take_idle() < 0.02
        for _ in range(3):
            y = f(y)
            meter.dispatched(y)
            y.block_until_ready()
            time.sleep(0.1)
        meter.sync()
        assert 0.15 < meter.take_idle() < 0.35
    finally:
        meter.close()
