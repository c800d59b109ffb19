"""One tiny end-to-end run per separation variant through avjax.train.train_and_evaluate, then
python -m avjax.evaluate's path (host-side bss_eval evaluator and its markdown table)."""
import json
import os

import pytest

from tests.sep_helpers import reference_convs, tiny_config

@pytest.fixture(scope="module", autouse=True)
def _reference_convs():
    yield from reference_convs()


# the shared tiny multisensory_local records: 11025 Hz, 15 fps, 56x56, 5 s, with stems
TINY_RECORDS = {"data.sample_rate": 11025, "data.num_frames": 8, "stft.hop": 91,
                "data.crop_size": 16,
                "batch_size": 4, "total_steps": 2, "log_every": 1, "eval_every": 2,
                "checkpoint_every": 2, "data.eval_batches": 1, "data.prefetch": 1,
                "progress_bar": False}


@pytest.mark.parametrize("variant", ["full", "unet_pit"])
def test_train_and_evaluate_tiny(variant, tiny_records, tmp_path):
    from avjax import evaluate, train
    train_path, eval_path = tiny_records
    config = tiny_config(variant, **TINY_RECORDS, **{"data.train_path": train_path,
                                                     "data.eval_path": eval_path})
    result = train.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2]
    ev = result["eval"]
    assert ev["num_examples"] == 4
    keys = {"si_sdr", "si_sdri", "sdr", "sir", "sar", "spec_l1", "si_sdri_irm", "si_sdri_mix"}
    if variant == "full":
        keys |= {"si_sdri_blank", "off_si_sdri"}
    assert keys <= set(ev)
    assert ev["si_sdri_mix"] == pytest.approx(0.0, abs=1e-6)
    assert ev["si_sdri_irm"] > 3.0                      # the oracle mask separates
    if variant == "full":       # the report of the in-loop evaluation (no second compile)
        from avjax.sep_metrics import report_markdown
        assert "video blanked" in report_markdown("full", 2, ev)
        return
    # evaluate from the workdir: DIR/eval/<step>.json and the markdown table
    res = evaluate.evaluate(str(tmp_path), None, {})
    assert res["step"] == 2
    table = open(os.path.join(tmp_path, "eval", "2_separation.md")).read()
    assert "oracle ideal ratio mask" in table and "mixture as estimate" in table
    assert res["metrics"]["si_sdri_irm"] == pytest.approx(ev["si_sdri_irm"], abs=1e-4)
