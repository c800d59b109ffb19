"""Optimiser from config: schedule, momentum SGD or Adam, global-norm clip, per-group rates.

A task may label parameter groups (e.g. ASMP's U-Net vs graph net) through
`optimizer.group_lr` = {label: lr multiplier} and a Task.param_labels(params) method.
"""
from __future__ import annotations

import optax

from avjax.errors import UserError


def learning_rate(opt_cfg, total_steps: int):
    lr = float(opt_cfg.lr)
    if opt_cfg.schedule == "constant":
        sched = optax.constant_schedule(lr)
    elif opt_cfg.schedule == "step":
        bounds = {int(b): float(opt_cfg.decay_factor) for b in opt_cfg.decay_steps if int(b) > 0}
        sched = optax.piecewise_constant_schedule(lr, bounds)
    elif opt_cfg.schedule == "cosine":
        sched = optax.cosine_decay_schedule(lr, max(1, total_steps - int(opt_cfg.warmup_steps)))
    else:
        raise UserError(f"unknown optimizer.schedule {opt_cfg.schedule!r} "
                        f"(constant, step or cosine)")
    if int(opt_cfg.warmup_steps) > 0:
        warm = optax.linear_schedule(0.0, lr, int(opt_cfg.warmup_steps))
        sched = optax.join_schedules([warm, sched], [int(opt_cfg.warmup_steps)])
    return sched


def _base(opt_cfg, lr):
    if opt_cfg.name == "sgd":
        return optax.sgd(lr, momentum=float(opt_cfg.momentum) or None)
    if opt_cfg.name == "adam":
        return optax.adam(lr, b1=float(opt_cfg.b1), b2=float(opt_cfg.b2))
    raise UserError(f"unknown optimizer.name {opt_cfg.name!r} (sgd or adam)")


def make_optimizer(opt_cfg, total_steps: int, param_labels=None) -> optax.GradientTransformation:
    sched = learning_rate(opt_cfg, total_steps)
    group_lr = dict(opt_cfg.get("group_lr", {}) or {})
    if param_labels is not None and group_lr:
        tx = optax.multi_transform(
            {g: _base(opt_cfg, lambda s, m=float(m): sched(s) * m) for g, m in group_lr.items()},
            param_labels)
    else:
        tx = _base(opt_cfg, sched)
    wd = float(opt_cfg.get("weight_decay", 0.0) or 0.0)
    if wd > 0:   # PyTorch-style L2: wd·w added to the gradient before momentum / Adam
        tx = optax.chain(optax.add_decayed_weights(wd), tx)
    if float(opt_cfg.clip_norm) > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(opt_cfg.clip_norm)), tx)
    return tx
