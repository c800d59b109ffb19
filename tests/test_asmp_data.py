"""ASMP data: pair examples from the synthetic world (static shapes, labels, NaN distances), the
ASIW converter round trip and its one-line errors, and a tiny train + evaluate end to end."""
import csv
import dataclasses
import os
import pickle

import h5py
import numpy as np
import pytest
import soundfile as sf

from data_pipelines import asiw, asmp_graphs as G, records, synthetic

SPEC = G.ExampleSpec(segment_samples=16383, clip_samples=33075, max_principals=1, max_context=3,
                     context_iou=-1.0, feature_dim=64)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("asmp_records"))
    world = dataclasses.replace(synthetic.preset("asmp_local"), duration_s=3.0)
    train = synthetic.generate_dataset(out, world, 12, split="train", seed=0, name="tiny")
    held = synthetic.generate_dataset(out, world, 3, split="eval", seed=7, name="tiny")
    return train, held


def test_pair_examples_have_static_shapes_and_labels(tiny_world):
    source = records.RecordSource(tiny_world[0])
    shapes = G.example_shapes(SPEC, train=True)
    for i in range(4):
        ex = G.make_example(source[i], np.random.default_rng(i), source=source, spec=SPEC,
                            train=True)
        assert {k: (v.shape, v.dtype) for k, v in ex.items()} == {
            k: (s, np.dtype(d)) for k, (s, d) in shapes.items()}
        np.testing.assert_allclose(ex["mix"], 0.5 * ex["wave"].sum(0), atol=1e-6)
        assert np.all(ex["cls"] >= 1) and np.all(ex["cls_valid"] == 1)
        assert np.all((ex["rel"] >= 0) & (ex["rel"] <= SPEC.r_max))
        assert np.all(ex["node_mask"].sum(-1) >= 2)               # principal + scene at least
        for v in range(2):
            n = int(ex["node_mask"][v].sum())
            assert np.all(ex["edge_w"][v, n:] == 0) and np.all(ex["nodes"][v, n:] == 0)
            assert np.all(np.diag(ex["edge_w"][v])[:n] == 1)
            assert np.all(np.isfinite(ex["edge_w"][v]))
        assert ex["cls"][0, 0] != ex["cls"][1, 0]                   # distinct classes paired
        # one direction label per window of the segment; the motion window's is among them
        assert np.all(ex["dir_win_valid"] == 1)         # 3-s clips: all r_max + 1 = 1 + 1 windows
        for v in range(2):
            assert ex["dir_win"][v, 0, ex["rel"][v]] == ex["dir"][v, 0]
            # the displacement the class came from (model.dir_uvd_weight's target)
            assert G.direction_class(ex["dir_uvd"][v, 0]) == ex["dir"][v, 0]
            np.testing.assert_array_equal(ex["dir_win_uvd"][v, 0, ex["rel"][v]], ex["dir_uvd"][v, 0])
    held = records.RecordSource(tiny_world[1])
    ev = G.make_example(held[0], np.random.default_rng(0), source=held, spec=SPEC, train=False)
    assert ev["full"].shape == (2, 33075) and int(ev["full_len"]) == 33075


def test_nan_distances_give_zero_weights_but_keep_edges():
    info = np.array([[2, 1, 1, 1], [-1, 0, 1, 1], [-1, 0, 1, 1]], np.float32)
    boxes = np.tile(np.array([[0.1, 0.1, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9]],
                             np.float32), (9, 1, 1))
    dist = np.full((2, 3, 3), np.nan, np.float32)
    dist[:, 0, 1] = dist[:, 1, 0] = 0.5
    arrays = {"object_info": info, "object_boxes": boxes, "object_distance": dist,
              "object_features": np.eye(3, 64, dtype=np.float32)}
    spec = dataclasses.replace(SPEC, context_iou=0.1)
    nodes, mask, ew = G.build_graph(arrays, [0], 1, 8, spec, np.ones(64, np.float32))
    assert mask.tolist()[:3] == [1, 1, 1] and mask[3:].sum() == 0   # context (IoU>0.1), p, scene
    assert nodes[0, 1] == 1 and nodes[1, 0] == 1 and np.all(nodes[2] == 1)
    assert np.all(ew[:2, 2] == 0) and np.all(ew[2, :2] == 0)          # scene: unknown distance
    assert ew[0, 1] == pytest.approx(np.exp(-1.0 / 1.0))              # only one distance
    dist[:] = np.nan
    _, _, ew = G.build_graph(arrays, [0], 1, 8, spec, np.ones(64, np.float32))
    assert np.all(ew[:3, :3] == 1)                                    # nothing valid → all 1


# ----------------------------------------------------------------------------- ASIW

def _write_asiw(root, vids=("vidA", "vidB"), t=24, d=4, f=8, w=3):
    rng = np.random.default_rng(0)
    for sub in ("audio", "features", "distances", "displacements"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, "test.csv"), "w", newline="") as fh:
        csv.writer(fh).writerows([["video_id"]] + [[v] for v in vids])
    with open(os.path.join(root, "labels.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["video_id", "object", "audio_class", "detection"])
        for k, v in enumerate(vids):
            wr.writerow([v, 0, 3 + k, 1])
    truth = {}
    for v in vids:
        audio = (0.3 * rng.standard_normal(22050 * w)).astype(np.float32)   # 22.05 kHz → resampled
        sf.write(os.path.join(root, "audio", f"{v}.wav"), audio, 22050, subtype="FLOAT")
        x1 = rng.uniform(0, 0.5, (t, d, 2))
        boxes = np.concatenate([x1, x1 + 0.3], -1).astype(np.float32)
        feats = rng.standard_normal((t, d, f)).astype(np.float32)
        with h5py.File(os.path.join(root, "features", f"{v}.h5"), "w") as h:
            h["boxes"], h["features"] = boxes, feats
            h["classes"] = np.arange(d)[None].repeat(t, 0)
            h["scores"] = np.full((t, d), 0.9, np.float32)
            h["scene"] = rng.standard_normal((t, f)).astype(np.float32)
        dist = rng.uniform(0.5, 2, (w, d, d)).astype(np.float32)
        dist[:, 0, 2] = np.nan
        disp = {0: rng.standard_normal((w, 3)).astype(np.float32)}
        with open(os.path.join(root, "distances", f"{v}.pkl"), "wb") as fh:
            pickle.dump(dist, fh)
        with open(os.path.join(root, "displacements", f"{v}.pkl"), "wb") as fh:
            pickle.dump(disp, fh)
        truth[v] = (feats, dist, disp[0])
    return truth


def test_asiw_round_trip(tmp_path):
    root = str(tmp_path / "asiw")
    truth = _write_asiw(root)
    manifest = asiw.convert(root, str(tmp_path / "out"), "test")
    source = records.RecordSource(manifest)
    assert len(source) == 2
    for i, vid in enumerate(("vidA", "vidB")):
        clip = records.decode_example(source[i])
        feats, dist, disp = truth[vid]
        a = clip["arrays"]
        assert clip["id"] == vid and clip["sample_rate"] == 11025
        assert clip["audio"].shape == (3 * 11025, 1)
        np.testing.assert_allclose(a["object_features"], feats[[0, 8, 16]], rtol=1e-6)
        np.testing.assert_array_equal(np.isnan(a["object_distance"]), np.isnan(dist))
        np.testing.assert_allclose(a["motion"][1], disp, rtol=1e-6)
        assert np.all(np.isnan(a["motion"][0]))
        assert a["object_info"][1].tolist() == [2 + i, 1, 1, 1]
    spec = dataclasses.replace(SPEC, feature_dim=8, max_context=3, context_iou=-1.0,
                               clip_samples=3 * 11025)
    ex = G.make_example(source[0], np.random.default_rng(0), source=source, spec=spec, train=False)
    assert ex["cls"][:, 0].tolist() == [3, 4]
    assert ex["nodes"].shape == (2, 5, 8) and ex["node_mask"][0].sum() == 5   # 3 ctx + p + scene


def test_asiw_errors_name_the_video(tmp_path):
    root = str(tmp_path / "asiw")
    _write_asiw(root)
    os.remove(os.path.join(root, "displacements", "vidB.pkl"))
    with pytest.raises(ValueError, match=r"ASIW video 'vidB': missing .*vidB\.pkl"):
        asiw.convert(root, str(tmp_path / "out"), "test")
    assert not os.path.exists(records.manifest_path(str(tmp_path / "out"), "asiw", "test"))
    with open(os.path.join(root, "displacements", "vidB.pkl"), "wb") as fh:
        fh.write(b"not a pickle")
    with pytest.raises(ValueError, match=r"ASIW video 'vidB': .* not a readable pickle") as e:
        asiw.convert(root, str(tmp_path / "out"), "test")
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- end to end

def test_tiny_train_and_evaluate(tiny_world, tmp_path):
    from avjax import train
    from avjax.asmp_eval import Evaluator
    from configs import asmp as asmp_config
    c = asmp_config.get_config("local")
    tiny = {"data.train_path": tiny_world[0], "data.eval_path": tiny_world[1],
            "data.segment_samples": 16383, "data.hop": 128, "data.n_fft": 254,
            "data.clip_samples": 33075, "data.eval_hop_samples": 8192, "data.eval_batches": 0,
            "data.prefetch": 1,
            "model.map_hidden": 8, "model.map_out": 8, "model.heads": 2, "model.head_features": 4,
            "model.edge_features": 8, "model.gru_features": 8, "model.unet_ngf": 2,
            "model.classifier_width": 2, "model.direction_width": 2, "model.direction_embed": 8,
            "model.direction_hidden": 8, "batch_size": 2, "total_steps": 2, "log_every": 1,
            "eval_every": 2, "checkpoint_every": 2, "progress_bar": False}
    for k, v in tiny.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    from avjax.models import layers
    layers.set_default_impl("reference")     # compiles ~2x faster than "fast" at these sizes
    try:
        result = train.train_and_evaluate(c, str(tmp_path / "work"))
    finally:
        layers.set_default_impl(None)
    assert np.isfinite(result["train"]["loss"])
    assert np.isfinite(result["train"]["displacement"])       # local: model.dir_uvd_weight > 0
    ev = result["eval"]
    for k in ("sdr", "sdr_swapped", "sdr_blank", "sdr_oracle_irm", "sdr_mixture",
              "direction_accuracy", "direction_majority_baseline"):
        assert k in ev and np.isfinite(ev[k]), k
    assert ev["num_pairs"] + ev["skipped_pairs"] == 3     # 3 pairs; the padded 4th row skipped
    assert ev["sdr_oracle_irm"] > ev["sdr_mixture"]
    # the report: markdown table and confusion PNG
    evaluator = Evaluator(28)
    evaluator.confusion[0, 0] = 3
    evaluator.confusion[1, 0] = 1
    evaluator.dir_total[:] = 2
    evaluator.dir_correct[:] = [2, 1]
    evaluator.write_report(str(tmp_path / "rep"), 2, {**ev, **evaluator.result()})
    md = open(tmp_path / "rep" / "2_report.md").read()
    assert "graphs swapped" in md and "majority-class baseline" in md
    assert os.path.getsize(tmp_path / "rep" / "2_direction_confusion.png") > 1000
