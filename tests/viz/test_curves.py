"""Training curves: what is read from a run's log (a resumed run's repeated steps, a torn last
line), the picture of several runs, and `formers plot`'s clear errors."""

import json
import sys

import pytest

from formers.cli.main import main
from formers.viz.curves import plot_curves, read_curves


def _write_log(run, records, tail=""):
    run.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run / "log.jsonl").write_text(text)


def _train(step, loss, seconds):
    return {"type": "train", "step": step, "lr": 1e-3 * step, "loss": loss, "seconds": seconds}


@pytest.fixture
def runs(tmp_path):
    a, b = tmp_path / "run_a", tmp_path / "run_b"
    _write_log(a, [
        {"type": "data", "split": "train", "tokens": 10},
        _train(1, 4.0, 1.0), _train(2, 3.5, 2.0), {"type": "valid", "step": 2, "loss": 3.0,
                                                   "bleu": 5.0, "seconds": 2.5},
        {"type": "resume", "step": 1}, _train(2, 3.4, 2.1),  # the resumed run's step 2 wins
        _train(3, 3.0, 3.0),
    ], tail='{"type": "train", "st')  # fmt: skip
    _write_log(b, [_train(1, 5.0, 1.0), _train(2, 4.0, 2.0),
                   {"type": "valid", "step": 2, "loss": 3.9, "accuracy": 0.5, "seconds": 2.2}])
    return a, b


def test_read_keeps_the_last_record_of_a_step_and_skips_a_torn_last_line(runs):
    curves = read_curves(runs[0])
    assert curves.name == "run_a"
    assert curves.train["loss"] == [(1, 1.0, 4.0), (2, 2.1, 3.4), (3, 3.0, 3.0)]
    assert curves.valid == {"loss": [(2, 2.5, 3.0)], "bleu": [(2, 2.5, 5.0)]}


def test_plot_overlays_runs_with_every_metric_either_logged(runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    rows = plot_curves([read_curves(r) for r in runs], out)
    assert rows == ["training loss", "learning rate", "validation loss", "validation bleu",
                    "validation accuracy"]  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plots_and_refuses_clearly(runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "both.svg"
    assert main(["plot", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.read_text().lstrip().startswith("<?xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    _write_log(broken, [_train(1, 4.0, 1.0)], tail="not json\n" + json.dumps(_train(2, 3, 2)))
    for argv, words in [
        ([str(empty)], ["has no log.jsonl", "not a run directory"]),
        ([str(tmp_path / "missing")], ["is not a directory"]),
        ([str(broken)], ["line 2: not JSON"]),
        ([str(runs[0]), "--out", str(tmp_path / "x.txt")], ["unknown picture type", ".png"]),
        ([str(runs[0]), "--out", str(tmp_path)], ["is a directory"]),
    ]:
        if "--out" not in argv:
            argv = [*argv, "--out", str(tmp_path / "x.png")]
        assert main(["plot", *argv]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)
    no_train = tmp_path / "no_train"
    _write_log(no_train, [{"type": "data", "split": "train", "tokens": 1}])
    assert main(["plot", str(no_train), "--out", str(tmp_path / "x.png")]) == 2
    assert "no training record" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(runs[0]), "--out", str(tmp_path / "x.png")]) == 2
    assert "pip install 'formers[viz]'" in capsys.readouterr().err
