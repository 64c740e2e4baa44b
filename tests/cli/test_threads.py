"""``--threads N`` of the commands that run a model: accepted, and applied before the model runs."""

import pytest
import torch

from formers.cli.main import main


def _argv(command: str, checkpoint, tmp_path) -> list[str]:
    text = tmp_path / "input.txt"
    text.write_text("the cat sat on the mat\n", encoding="utf-8")
    common = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    extra = {
        "translate": ["--input", str(text), "--output", str(tmp_path / "out.txt")],
        "generate": ["--prompt", "hello", "--max-new-tokens", "2"],
        "predict": ["--input", str(text), "--output", str(tmp_path / "out.txt")],
        "attention": ["--src", "the cat", "--out", str(tmp_path / "attention.html")],
    }[command]
    return [command, *common, *extra]


@pytest.mark.parametrize(
    "command, checkpoint",
    [
        ("translate", "spm_translator"),
        ("generate", "char_gpt"),
        ("predict", "bert_classifier"),
        ("attention", "spm_translator"),
    ],
)
def test_threads_option_sets_torch_threads(command, checkpoint, request, tmp_path, capsys):
    # the autouse fixture runs every test on one thread and restores the count afterwards
    assert torch.get_num_threads() == 1
    argv = _argv(command, request.getfixturevalue(checkpoint), tmp_path)
    assert main([*argv, "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert main([*argv, "--threads", "0"]) == 0  # 0: leave the count as it is
    assert torch.get_num_threads() == 1


def test_negative_threads_is_a_one_line_error(capsys, char_gpt):
    code = main(["generate", "--checkpoint", str(char_gpt), "--device", "cpu", "--threads", "-1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "formers generate: error: --threads must be >= 0 (0: PyTorch's default), got -1"
    )
