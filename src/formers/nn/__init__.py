"""Building blocks of the Transformer, one concept per module."""

from formers.nn.attention import MultiHeadAttention
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.embeddings import Embeddings
from formers.nn.encoder_decoder import AttentionMaps, EncoderDecoder, Seq2SeqState
from formers.nn.encoder_embeddings import EncoderEmbeddings
from formers.nn.encoder_heads import (
    ClassificationHead,
    EncoderForClassification,
    EncoderForMaskedLM,
    MaskedLMHead,
)
from formers.nn.encoder_only import EncoderOnlyModel, Pooler, mean_pool, sentence_embeddings
from formers.nn.feed_forward import FeedForward, GatedFeedForward, feed_forward
from formers.nn.kernels import KERNELS, eager_attention, get_kernel, sdpa_attention
from formers.nn.kv_cache import DecoderCache, KVCache, LayerCache, StaticKVCache
from formers.nn.layer_stack import LayerStack, SharedLayerStack
from formers.nn.layers import DecoderLayer, EncoderLayer
from formers.nn.masks import (
    AttentionMask,
    causal_mask,
    combine_masks,
    lengths_mask,
    padding_mask,
)
from formers.nn.mechanism import (
    AttentionMechanism,
    MechanismError,
    SoftmaxAttention,
    get_mechanism,
)
from formers.nn.norms import PostNormResidual, PreNormResidual, make_norm
from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from formers.nn.recorder import AttentionRecorder
from formers.nn.stacks import Decoder, Encoder

__all__ = [
    "AttentionMask",
    "AttentionMechanism",
    "AttentionRecorder",
    "LayerStack",
    "SharedLayerStack",
    "MechanismError",
    "PositionScheme",
    "Positions",
    "SoftmaxAttention",
    "get_mechanism",
    "ClassificationHead",
    "DecoderOnlyLM",
    "EncoderEmbeddings",
    "EncoderForClassification",
    "EncoderForMaskedLM",
    "EncoderOnlyModel",
    "MaskedLMHead",
    "Pooler",
    "mean_pool",
    "sentence_embeddings",
    "KERNELS",
    "AttentionMaps",
    "Decoder",
    "DecoderCache",
    "DecoderLayer",
    "Embeddings",
    "Encoder",
    "EncoderDecoder",
    "EncoderLayer",
    "FeedForward",
    "GatedFeedForward",
    "KVCache",
    "LayerCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "PostNormResidual",
    "PreNormResidual",
    "RotaryEmbedding",
    "Seq2SeqState",
    "SinusoidalPositionalEncoding",
    "StaticKVCache",
    "causal_mask",
    "combine_masks",
    "eager_attention",
    "feed_forward",
    "get_kernel",
    "lengths_mask",
    "make_norm",
    "padding_mask",
    "sdpa_attention",
    "sinusoidal_table",
]
