"""``formers generate``: the printed text is the prompt and the decoded output of the Python API
(sampling with a seed, greedy at temperature 0), streamed token by token; bad checkpoints,
prompts and options get one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from formers.cli.main import main
from formers.inference.generate import generate
from formers.training.checkpoint import load_model


def run_generate(capsys, checkpoint, *args: str) -> tuple[int, str, str]:
    code = main(["generate", "--checkpoint", str(checkpoint), "--device", "cpu", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def api_text(checkpoint, prompt: str, **options) -> str:
    """What the command should print: the prompt, then the text the new tokens add to it."""
    model, tokenizer, _ = load_model(checkpoint)
    ids = tokenizer.encode(prompt)
    new = generate(model, ids, **options)
    before, after = tokenizer.decode(ids), tokenizer.decode(ids + new)
    assert after.startswith(before)
    return prompt + after[len(before) :] + "\n"


def test_seeded_sampling_is_reproducible_and_equals_the_python_api(capsys, char_gpt):
    args = ["--prompt", "naïve ", "--max-new-tokens", "15", "--seed", "7", "--top-k", "10"]
    code, out, err = run_generate(capsys, char_gpt, *args)
    assert code == 0, err
    assert run_generate(capsys, char_gpt, *args)[1] == out
    expected = api_text(char_gpt, "naïve ", max_new_tokens=15, temperature=1.0, top_k=10, seed=7)
    assert out == expected
    assert len(out) == len("naïve ") + 15 + 1  # characters: one a token
    other = run_generate(capsys, char_gpt, *args[:-4], "--seed", "8", *args[-2:])[1]
    assert other != out  # the seed matters


def test_sentencepiece_output_keeps_word_spaces_and_equals_the_api(capsys, spm_gpt):
    args = ["--prompt", "the quick", "--max-new-tokens", "12", "--seed", "3", "--top-p", "0.9"]
    code, out, err = run_generate(capsys, spm_gpt, *args)
    assert code == 0, err
    assert out == api_text(spm_gpt, "the quick", max_new_tokens=12, top_p=0.9, seed=3)


@pytest.mark.parametrize("stream", [True, False])
def test_temperature_zero_is_greedy(capsys, spm_gpt, stream):
    args = ["--prompt", "a cat", "--max-new-tokens", "10", "--temperature", "0"]
    code, out, err = run_generate(capsys, spm_gpt, *args, *([] if stream else ["--no-stream"]))
    assert code == 0, err
    assert out == api_text(spm_gpt, "a cat", max_new_tokens=10, temperature=0)


def test_text_is_flushed_token_by_token_unless_no_stream(monkeypatch, char_gpt):
    class Recorder:
        def __init__(self):
            self.flushed: list[str] = []
            self.pending = ""

        def write(self, text):
            self.pending += text

        def flush(self):
            if self.pending:
                self.flushed.append(self.pending)
            self.pending = ""

    for flag, expected_chunks in (([], 1 + 8 + 1), (["--no-stream"], 1)):
        recorder = Recorder()
        monkeypatch.setattr("sys.stdout", recorder)
        args = ["--checkpoint", str(char_gpt), "--device", "cpu", "--prompt", "ok", "--seed", "1"]
        assert main(["generate", *args, "--max-new-tokens", "8", *flag]) == 0
        # the prompt, one chunk per character, and the final newline
        assert len(recorder.flushed) == expected_chunks, recorder.flushed


def test_empty_prompt_starts_from_bos(capsys, spm_gpt):
    code, out, err = run_generate(capsys, spm_gpt, "--max-new-tokens", "6", "--seed", "0")
    assert code == 0, err
    model, tokenizer, _ = load_model(spm_gpt)
    new = generate(model, [], max_new_tokens=6, seed=0)
    assert out == tokenizer.decode(new) + "\n"


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("formers generate: error:")
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_empty_prompt_without_bos_is_an_error(capsys, char_gpt):
    code, out, err = run_generate(capsys, char_gpt)
    assert_one_line_error(code, err, "BOS", "--prompt")
    assert out == ""


def test_prompt_longer_than_the_context_is_an_error(capsys, char_gpt):
    code, out, err = run_generate(capsys, char_gpt, "--prompt", "hello world " * 3)
    assert_one_line_error(code, err, "36 tokens", "context_length is 24")
    assert out == ""  # nothing printed before the error


def test_character_outside_the_vocabulary_is_an_error(capsys, char_gpt):
    assert_one_line_error(*run_generate(capsys, char_gpt, "--prompt", "xyz")[::2], "'x'")


def test_other_architectures_are_refused_with_the_command_to_use(capsys, bert_classifier):
    code, _, err = run_generate(capsys, bert_classifier, "--prompt", "hi")
    assert_one_line_error(code, err, "'bert'", "formers predict")


@pytest.mark.parametrize(
    "option",
    [
        ["--max-new-tokens", "0"],
        ["--temperature", "-0.5"],
        ["--top-p", "0"],
        ["--top-p", "1.5"],
        ["--top-k", "-1"],
    ],
)
def test_bad_options_are_refused(capsys, char_gpt, option):
    code, out, err = run_generate(capsys, char_gpt, "--prompt", "ok", *option)
    assert_one_line_error(code, err, option[0])
    assert out == ""


def test_missing_checkpoint_is_an_error(capsys, tmp_path):
    code, _, err = run_generate(capsys, tmp_path / "nope", "--prompt", "ok")
    assert_one_line_error(code, err, "nope")
