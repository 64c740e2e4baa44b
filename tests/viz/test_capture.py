"""capture_attention: shapes, token labels, normalization, causality, parity with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from formers.viz import AttentionRecord, capture_attention

SRC, TGT = "the cat sat on the mat", "die katze sitzt auf der matte"


def _rows_sum_to_one(record: AttentionRecord) -> None:
    for name, array in record.views.items():
        assert array.dtype == np.float32, name
        np.testing.assert_allclose(array.sum(-1), 1.0, atol=1e-5, err_msg=name)


def test_encoder_decoder_forced(transformer, spm):
    record = capture_attention(transformer, spm, SRC, TGT)
    src_ids, tgt_ids = spm.encode(SRC), spm.encode(TGT)
    s, t = len(src_ids), len(tgt_ids) + 1  # the decoder reads BOS + target
    assert record.family == "encoder-decoder"
    assert record.source == spm.pieces(src_ids)
    assert record.target == spm.pieces([spm.bos_id, *tgt_ids])
    assert record.views["encoder"].shape == (2, 2, s, s)
    assert record.views["decoder"].shape == (2, 2, t, t)
    assert record.views["cross"].shape == (2, 2, t, s)
    assert record.axes("cross") == (record.target, record.source)
    assert record.text == {"src": SRC, "tgt": TGT}
    _rows_sum_to_one(record)


def test_forced_weights_equal_forward_with_attention(transformer, spm):
    record = capture_attention(transformer, spm, SRC, TGT)
    src = torch.tensor([spm.encode(SRC)])
    tgt = torch.tensor([[spm.bos_id, *spm.encode(TGT)]])
    with torch.no_grad():
        _, maps = transformer.forward_with_attention(src, tgt)
    for name in ("encoder", "decoder", "cross"):
        expected = torch.stack([w[0] for w in getattr(maps, name)]).numpy()
        np.testing.assert_allclose(record.views[name], expected, atol=1e-6, err_msg=name)


def test_encoder_decoder_translates_without_target(transformer, spm):
    from formers.inference.translate import translate

    best = translate(transformer, spm, [SRC], beam=2)[0][0]
    record = capture_attention(transformer, spm, SRC, beam=2)
    assert record.target == spm.pieces([spm.bos_id, *best.tokens])
    assert record.text["tgt"] == best.text
    assert record.views["cross"].shape[2] == len(best.tokens) + 1
    _rows_sum_to_one(record)


def test_causal_views_are_lower_triangular(transformer, spm, gpt, char_tokenizer):
    seq2seq = capture_attention(transformer, spm, SRC, TGT)
    lm = capture_attention(gpt, char_tokenizer, "the cat")
    for record, view in ((seq2seq, "decoder"), (lm, "self")):
        assert record.is_causal(view)
        array = record.views[view]
        upper = np.triu(np.ones(array.shape[-2:], dtype=bool), k=1)
        assert np.all(array[..., upper] == 0), view
    assert not seq2seq.is_causal("encoder")


def test_decoder_only(gpt, char_tokenizer):
    record = capture_attention(gpt, char_tokenizer, "hello")
    assert record.family == "decoder-only" and record.causal
    assert record.source == list("hello") and record.target == []
    assert record.views["self"].shape == (2, 2, 5, 5)
    _rows_sum_to_one(record)
    with torch.no_grad():
        _, weights = gpt.forward_with_attention(torch.tensor([char_tokenizer.encode("hello")]))
    np.testing.assert_allclose(record.views["self"], torch.stack([w[0] for w in weights]))


@pytest.mark.parametrize("wrapped", [True, False])
def test_encoder_only(bert, wordpiece, wrapped):
    model = bert if wrapped else bert.body
    record = capture_attention(model, wordpiece, "the cat sat")
    ids = wordpiece.encode("the cat sat")
    assert record.family == "encoder-only" and not record.causal
    assert record.source == wordpiece.pieces(ids)
    assert record.source[0] == "[CLS]" and record.source[-1] == "[SEP]"
    assert record.views["self"].shape == (2, 2, len(ids), len(ids))
    _rows_sum_to_one(record)


def test_to_dict_is_json(transformer, spm):
    record = capture_attention(transformer, spm, SRC, TGT)
    values = json.loads(json.dumps(record.to_dict()))
    assert set(values["views"]) == {"encoder", "decoder", "cross"}
    assert values["axes"]["cross"] == ["target", "source"]
    assert np.allclose(values["views"]["cross"], record.views["cross"], atol=1e-4)


def test_errors(transformer, spm, gpt, char_tokenizer):
    with pytest.raises(ValueError, match="no tokens"):
        capture_attention(transformer, spm, "", TGT)
    with pytest.raises(ValueError, match="encoder-decoder"):
        capture_attention(gpt, char_tokenizer, "hello", "world")
    with pytest.raises(ValueError, match="at most 32"):
        capture_attention(gpt, char_tokenizer, "hello world " * 4)
    with pytest.raises(ValueError, match="cannot capture"):
        capture_attention(torch.nn.Linear(2, 2), char_tokenizer, "hello")
    record = capture_attention(gpt, char_tokenizer, "hello")
    with pytest.raises(ValueError, match="no 'cross' attention"):
        record.shape("cross")
