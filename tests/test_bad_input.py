"""Bad input reaches the user as one clear line and a non-zero exit, never a traceback wall."""
import json
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT, tiny_overrides

SHIFT = os.path.join(ROOT, "configs", "shift.py")


def _main(workdir, records, **extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("AVJAX_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "avjax.main", f"--config={SHIFT}:local",
                           f"--workdir={workdir}"] + tiny_overrides(records, **extra),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _one_error_line(r):
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [l for l in r.stderr.strip().splitlines() if "Traceback" in l or "Error" in l
             or l.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in lines[0], r.stderr[-3000:]
    return lines[0]


def test_missing_data_path(tiny_records, tmp_path):
    r = _main(tmp_path / "w", tiny_records, **{"data.train_path": str(tmp_path / "nope")})
    line = _one_error_line(r)
    assert str(tmp_path / "nope") in line
    assert not (tmp_path / "w").exists()          # nothing written for a run that cannot start


def _copy_records(tiny_records, dst):
    train, held = tiny_records
    src = os.path.dirname(train)
    shutil.copytree(src, dst)
    return os.path.join(dst, os.path.basename(train)), os.path.join(dst, os.path.basename(held))


def test_corrupt_shard_names_file_and_offset_or_is_skipped(tiny_records, tmp_path):
    train, held = _copy_records(tiny_records, tmp_path / "data")
    shard = sorted(p for p in os.listdir(tmp_path / "data") if "-train.tfrecord-00000" in p)[0]
    path = tmp_path / "data" / shard
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    r = _main(tmp_path / "w", (train, held), total_steps=4)
    line = _one_error_line(r)
    assert "corrupt record in" in line and shard in line and "at byte" in line
    r = _main(tmp_path / "w2", (train, held), total_steps=2, eval_every=2,
              **{"data.skip_corrupt": True})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(l) for l in open(tmp_path / "w2" / "metrics.jsonl")]
    assert max(row.get("skipped_records", 0) for row in rows) >= 1


def test_zero_length_audio_record(tiny_records, tmp_path):
    from tensorflow_datasets.proto import tf_example_pb2
    from data_pipelines import records, tfrecord
    train, held = _copy_records(tiny_records, tmp_path / "data")
    # A third-party writer produced a clip whose audio is empty.
    ex = tf_example_pb2.Example.FromString(records.RecordSource(train)[0])
    f = ex.features.feature
    f["audio/num_samples"].int64_list.value[:] = [0]
    f["audio/pcm"].bytes_list.value[:] = [b""]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    with tfrecord.TFRecordWriter(str(bad_dir / "bad-train.tfrecord-00000-of-00001")) as w:
        for _ in range(8):
            w.write(ex.SerializeToString())
    r = _main(tmp_path / "w", (str(bad_dir), held), total_steps=2)
    assert "zero-length audio" in _one_error_line(r)
