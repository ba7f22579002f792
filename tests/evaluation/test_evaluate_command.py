from __future__ import annotations

import json

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
    assert set(saved["aggregate"]) == {"STS12", "TREC", "downstream", "downstream (-SNLI)"}
    assert set(saved["aggregate_dev"]) == set(saved["aggregate"])
    assert saved["groups"]["downstream"]["coverage"] == "2 of 18 tasks"
    assert saved["groups"]["downstream (-SNLI)"]["coverage"] == "2 of 17 tasks" and "probing" not in saved["groups"]
    assert "mean of 2 of 17 tasks" in result.output and "partial" in result.output
    assert saved["protocol"]["senteval"] == "prototyping" and saved["protocol"]["seed"] == 2
    assert saved["protocol"]["pair_features"] == "[|u-v|, u*v]"  # the CLI's default is SentEval's
    again = CliRunner().invoke(main, args)
    assert json.loads(output.read_text())["tasks"] == saved["tasks"] and again.exit_code == 0


def test_device_option_reaches_the_senteval_classifiers(tiny_bert, senteval_dir, monkeypatch):
    from declutr.evaluation import run

    devices = []
    original = run.evaluate

    def spy(*args, **kwargs):
        devices.append(kwargs.get("device"))
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "evaluate", spy)
    args = ["evaluate", str(tiny_bert), "--tasks", "STS12", "--data-dir", str(senteval_dir), "--no-cache"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert devices == ["cpu"]  # where ImageCaptionRetrieval's ranking model trains, not only the encoder


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
    # probing files are looked for in --probing-dir, named with what SentEval calls them
    result = runner.invoke(
        main,
        [
            "evaluate",
            str(tiny_bert),
            "--tasks",
            "Tense",
            "--data-dir",
            str(senteval_dir),
            "--probing-dir",
            str(tmp_path / "probing"),
        ],
    )
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert f"Tense: missing {tmp_path / 'probing' / 'past_present.txt'}" in result.output
    assert "data/probing/past_present.txt" in result.output
