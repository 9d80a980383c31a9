"""Run history, the regression check of `kiridashi trend`, and `dvc exp show --json` parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiridashi import history
from kiridashi.cli import main

DATA = Path(__file__).parent / "data"


def _record(label: str, iou: float, recall: float = 0.9, input_dir: str = "/data/dev") -> dict:
    return {"time": f"2026-01-01T00:00:0{len(label) % 10}", "label": label, "input_dir": input_dir,
            "metrics": {"mean_iou": iou, "character_recall": recall, "scored": 79}}  # fmt: skip


def _write(path: Path, records: list[dict]) -> Path:
    for r in records:
        history.append(r, path)
    return path


def test_append_and_load_round_trip(tmp_path):
    path = _write(tmp_path / "h" / "runs.jsonl", [_record("a", 0.8), _record("b", 0.9)])
    with path.open("a") as fh:
        fh.write("{not json\n")
    assert [r["label"] for r in history.load(path)] == ["a", "b"]


def test_make_record_carries_provenance(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    report = {"params_digest": "abc", "output_dir": "/o", "input_dir": "/i",
              "summary": {"mean_iou": 0.9, "min_iou": None, "scored": 3}}  # fmt: skip
    rec = history.make_record(report)
    assert rec["dvc_exp"] == rec["label"] == "exp-1" and rec["params_digest"] == "abc"
    assert rec["input_dir"] == "/i" and rec["metrics"] == {"mean_iou": 0.9, "scored": 3}
    assert rec["time"].endswith("+00:00")


def test_trend_names_the_better_run_and_flags_regressions():
    runs = [_record("base", 0.85), _record("bigger-scale", 0.88, 0.95)]
    res = history.trend(runs, 0.01)
    assert res.ok and res.better == "bigger-scale" and res.best_overall == "bigger-scale"
    assert res.best["mean_iou"]["label"] == "bigger-scale"
    runs.append(_record("tiny-scale", 0.40, 0.5))
    res = history.trend(runs, 0.01)
    assert not res.ok and res.better == "bigger-scale"
    assert res.regressions[0].startswith("mean_iou dropped 0.8800 -> 0.4000")
    assert any("vs best 0.8800 (bigger-scale)" in b for b in res.below_best)
    text = history.format_trend(runs, res)
    assert "REGRESSION: mean_iou" in text and "0.850 0.880 0.400" in text
    # within tolerance is not a regression; per-metric tolerances
    assert history.trend([_record("a", 0.80), _record("b", 0.795)], 0.01).ok
    assert not history.trend([_record("a", 0.80), _record("b", 0.795)], {"mean_iou": 0.001}).ok


def test_trend_compares_runs_on_the_same_input_only():
    runs = [_record("dev1", 0.9), _record("other", 0.2, input_dir="/data/other"),
            _record("dev2", 0.91)]  # fmt: skip
    assert [r["label"] for r in history.same_dataset(runs)] == ["dev1", "dev2"]


def test_cli_trend_exit_codes(tmp_path, capsys):
    path = _write(tmp_path / "runs.jsonl", [_record("good", 0.9), _record("better", 0.92)])
    assert main(["trend", "--history", str(path)]) == 0
    assert "better = better" in capsys.readouterr().out
    _write(path, [_record("worse", 0.7)])
    assert main(["trend", "--history", str(path)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["trend", "--history", str(path), "--tolerance", "0.5"]) == 0
    capsys.readouterr()
    assert main(["trend", "--history", str(path), "--rank", "mean_iou"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == "better"
    assert main(["trend", "--history", str(tmp_path / "none.jsonl")]) == 0


def test_parse_real_dvc_exp_show_document():
    """tests/data/dvc_exp_show.json: `dvc exp show --json` (DVC 3.67) of a baseline commit and two
    experiments, `-S detect.scales=[1.0]` ("good") then `-S detect.scales=[0.25]` ("tiny-scale");
    the workspace holds the last experiment's results."""
    doc = json.loads((DATA / "dvc_exp_show.json").read_text())
    records = history.parse_dvc_exp_show(doc)
    assert [r["label"] for r in records] == ["master", "good", "tiny-scale"]  # workspace = dup
    good, tiny = records[1], records[2]
    assert good["baseline"] == "master" and good["params"] == {"detect.scales": [1.0]}
    assert tiny["params"] == {"detect.scales": [0.25]}
    assert good["metrics"]["mean_iou"] == 0.9 and tiny["metrics"]["mean_iou"] == 0.225
    res = history.trend(records, 0.01)
    # the tiny detection scale is a regression against its baseline commit (issue #15: not
    # against the sibling experiment "good")
    assert not res.ok and res.previous is records[0] and res.better == "master"
    text = history.format_trend(records, res)
    assert "tiny-scale (vs master): detect.scales=[0.25]" in text
    assert "latest tiny-scale vs baseline master: better = master" in text


def test_dvc_workspace_with_new_results_is_the_latest():
    doc = json.loads((DATA / "dvc_exp_show.json").read_text())
    doc[0]["data"]["metrics"]["metrics.json"]["data"]["mean_iou"] = 0.95  # an uncommitted repro
    records = history.parse_dvc_exp_show(doc)
    assert records[-1]["label"] == "workspace" and records[-1]["metrics"]["mean_iou"] == 0.95


@pytest.mark.parametrize("doc", [[], {"rev": "workspace", "data": {}}])
def test_parse_tolerates_empty_documents(doc):
    assert history.parse_dvc_exp_show(doc) == []


def test_every_check_appends_a_record(tmp_path, capsys):
    from tests.test_dashboard import _report

    _report(tmp_path)  # an output folder with GT
    results = tmp_path / "out" / "extraction_results.json"
    assert main(["check", "--results", str(results), "--label", "first"]) == 0
    assert main(["check", "--results", str(results), "--no-dashboard"]) == 0
    runs = history.load()
    assert len(runs) == 2 and runs[0]["label"] == "first"
    assert runs[0]["input_dir"] == str(tmp_path / "in") and "mean_iou" in runs[0]["metrics"]
    assert main(["trend"]) == 0  # the same results twice: no regression
    assert "no regression" in capsys.readouterr().out


def test_equal_values_are_not_below_the_best():
    runs = [_record("a", 0.9, 1.0), _record("b", 0.9, 1.0)]
    res = history.trend(runs, 0.01)
    assert res.below_best == [] and res.ok
    assert "latest below best" not in history.format_trend(runs, res)


def test_experiments_are_compared_with_their_baseline_not_with_siblings():
    """Two queued experiments on one commit: the second is worse than the first but better than
    the baseline, so it is no regression; the comparison names the baseline."""
    base = {**_record("main", 0.80), "git_rev": "abc1234"}
    first = {**_record("exp-a", 0.90), "git_rev": "abc1234", "dvc_exp": "exp-a"}
    second = {**_record("exp-b", 0.82), "git_rev": "abc1234", "dvc_exp": "exp-b"}
    res = history.trend([base, first, second], 0.01)
    assert res.ok and res.previous is base and res.better == "exp-b"
    worse = {**_record("exp-c", 0.70), "git_rev": "abc1234", "dvc_exp": "exp-c"}
    res = history.trend([base, first, second, worse], 0.01)
    assert not res.ok and res.regressions[0].startswith("mean_iou dropped 0.8000 -> 0.7000")


def test_runs_of_one_revision_have_distinct_labels():
    runs = [{"time": f"2026-01-01T00:0{i}:00+00:00", "git_rev": "d2b070c",
             "metrics": {"mean_iou": 0.9}} for i in range(2)]  # fmt: skip
    text = history.format_trend(runs, history.trend(runs))
    assert "latest d2b070c@01-01T00:01 vs baseline d2b070c@01-01T00:00" in text


def test_extract_records_history_only_when_asked(sample_images, tmp_path):
    assert main(["extract", str(sample_images), str(tmp_path / "a")]) == 0
    assert history.load() == []  # an ad-hoc run stays out of the history
    assert main(["extract", str(sample_images), str(tmp_path / "b"), "--history"]) == 0
    assert len(history.load()) == 1
