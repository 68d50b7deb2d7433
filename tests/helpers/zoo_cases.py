"""Third-party architectures for the meter's zoo test: Hugging Face ``transformers`` models built
from tiny configurations (random weights, nothing downloaded).

timm is not here: it imports torchvision at import time, and PyPI's torchvision wheel for torch
2.13 does not load with the CPU build of torch (``operator torchvision::nms does not exist``), so
the vision models come from ``transformers`` too (ViT, DeiT, BEiT, DINOv2, Swin, ConvNeXt,
ResNet, BiT, ...).

Each case says what the meter must do with it: "exact" or "refused" (a ``ValueError`` naming
the module). Some batch sizes equal a sequence length, a head count or a channel count on
purpose: a check of the batch dimension that compares sizes only would pass them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
import transformers as tf
from torch import Tensor, nn

VOCAB = 40


class Logits(nn.Module):
    """A Hugging Face model as tensor -> logits: ``net(**{input_name: x}).logits``; an
    encoder-decoder also gets ``x`` as its decoder input."""

    def __init__(self, net: nn.Module, input_name: str, decoder: bool = False,
                 output: str = "logits") -> None:
        super().__init__()
        self.net = net
        self.input_name = input_name
        self.decoder = decoder
        self.output = output

    def forward(self, x: Tensor) -> Tensor:
        kwargs = {self.input_name: x}
        if self.decoder:
            kwargs["decoder_input_ids"] = x
        return getattr(self.net(**kwargs), self.output)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    batch_shape: tuple[int, ...]  # (N, T) token ids, or (N, C, H, W) images
    expect: str  # "exact" or "refused"
    train: bool = False  # training mode: dropout, stochastic depth drawn
    refusal: tuple[str, ...] = field(default=())  # words the refusal must contain

    def inputs(self, generator: torch.Generator) -> Tensor:
        if len(self.batch_shape) == 2:
            return torch.randint(1, VOCAB, self.batch_shape, generator=generator)
        return torch.randn(self.batch_shape, generator=generator, dtype=torch.float64)


def text(model_cls: type, config_cls: type, decoder: bool = False, **config: object,
         ) -> Callable[[], nn.Module]:
    return lambda: Logits(model_cls(config_cls(vocab_size=VOCAB, **config)), "input_ids",
                          decoder)


def vision(model_cls: type, config_cls: type, output: str = "logits", **config: object,
           ) -> Callable[[], nn.Module]:
    return lambda: Logits(model_cls(config_cls(num_labels=3, **config)), "pixel_values",
                          output=output)


BERT = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
DROPOUT = dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
GPT2 = dict(n_embd=8, n_layer=1, n_head=2, n_positions=16)
T5 = dict(d_model=8, d_kv=4, d_ff=12, num_layers=1, num_heads=2,
          relative_attention_num_buckets=8, dropout_rate=0.0)
LLAMA = dict(hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=16)
VIT = dict(image_size=8, patch_size=4, num_channels=3, hidden_size=8, num_hidden_layers=1,
           num_attention_heads=2, intermediate_size=12)
TWO_LAYER_VIT = {**VIT, "num_hidden_layers": 2}  # stochastic depth is 0 in the first layer
CONVNEXT = dict(num_channels=3, hidden_sizes=[4, 8], depths=[1, 1], num_stages=2)
RESNET = dict(num_channels=3, embedding_size=4, hidden_sizes=[4, 8], depths=[1, 1],
              layer_type="basic")

CASES = [
    # ------------------------------------------------------------------ encoders, tied heads
    Case("bert_mlm", text(tf.BertForMaskedLM, tf.BertConfig, **BERT, **NO_DROPOUT),
         (4, 6), "exact"),
    Case("bert_mlm_dropout", text(tf.BertForMaskedLM, tf.BertConfig, **BERT, **DROPOUT),
         (6, 6), "exact", train=True),
    Case("bert_classifier_batch_eq_seq", text(tf.BertForSequenceClassification, tf.BertConfig,
                                              num_labels=3, **BERT, **NO_DROPOUT),
         (5, 5), "exact"),
    Case("roberta_mlm_tied_bias", text(tf.RobertaForMaskedLM, tf.RobertaConfig,
                                       **{**BERT, "max_position_embeddings": 20},
                                       **NO_DROPOUT), (5, 5), "exact"),
    Case("roberta_mlm_dropout", text(tf.RobertaForMaskedLM, tf.RobertaConfig,
                                     **{**BERT, "max_position_embeddings": 20}, **DROPOUT),
         (3, 6), "exact", train=True),
    Case("distilbert_mlm", text(tf.DistilBertForMaskedLM, tf.DistilBertConfig, dim=8,
                                n_layers=1, n_heads=2, hidden_dim=12,
                                max_position_embeddings=16, dropout=0.0,
                                attention_dropout=0.0), (4, 4), "exact"),
    Case("electra_discriminator", text(tf.ElectraForTokenClassification, tf.ElectraConfig,
                                       embedding_size=6, num_labels=3, **BERT, **NO_DROPOUT),
         (3, 5), "exact"),
    Case("albert_shared_layers", text(tf.AlbertForMaskedLM, tf.AlbertConfig, embedding_size=6,
                                      **{**BERT, "num_hidden_layers": 2}, **NO_DROPOUT),
         (3, 5), "refused", refusal=("called again",)),
    Case("deberta_v2_relative", text(tf.DebertaV2ForMaskedLM, tf.DebertaV2Config,
                                     relative_attention=True, position_buckets=4,
                                     max_relative_positions=8, **BERT, **NO_DROPOUT),
         (3, 5), "exact"),
    # ------------------------------------------------------------------ decoders
    Case("gpt2_lm", text(tf.GPT2LMHeadModel, tf.GPT2Config, **GPT2, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0), (4, 4), "exact"),
    Case("gpt2_lm_dropout", text(tf.GPT2LMHeadModel, tf.GPT2Config, **GPT2, resid_pdrop=0.2,
                                 embd_pdrop=0.2, attn_pdrop=0.2), (3, 5), "exact", train=True),
    Case("llama_lm", text(tf.LlamaForCausalLM, tf.LlamaConfig, **LLAMA), (3, 5), "exact"),
    # FalconLinear (an nn.Linear subclass, re-run by torch.func) whose output the decoder
    # then changes in place (mlp_output += attention_output)
    Case("falcon_in_place_residual", text(tf.FalconForCausalLM, tf.FalconConfig, hidden_size=8,
                                          num_hidden_layers=1, num_attention_heads=2,
                                          new_decoder_architecture=False, multi_query=True,
                                          alibi=False, hidden_dropout=0.0,
                                          attention_dropout=0.0), (3, 5), "exact"),
    Case("llama_lm_tied", text(tf.LlamaForCausalLM, tf.LlamaConfig, tie_word_embeddings=True,
                               **LLAMA), (4, 4), "exact"),
    Case("opt_lm", text(tf.OPTForCausalLM, tf.OPTConfig, hidden_size=8, num_hidden_layers=1,
                        ffn_dim=12, num_attention_heads=2, word_embed_proj_dim=8,
                        max_position_embeddings=16, dropout=0.0), (3, 5), "refused",
         refusal=("is not the batch",)),
    # ------------------------------------------------------------------ encoder-decoder
    Case("t5_relative_buckets", text(tf.T5ForConditionalGeneration, tf.T5Config, decoder=True,
                                     **T5), (3, 6), "refused",
         refusal=("relative_attention_bias",)),
    Case("t5_relative_buckets_batch_eq_seq",
         text(tf.T5ForConditionalGeneration, tf.T5Config, decoder=True, **T5), (6, 6),
         "refused", refusal=("relative_attention_bias",)),
    Case("bart_learned_positions",
         text(tf.BartForConditionalGeneration, tf.BartConfig, decoder=True, d_model=8,
              encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
              decoder_attention_heads=2, encoder_ffn_dim=12, decoder_ffn_dim=12,
              max_position_embeddings=16, dropout=0.0), (5, 5), "refused",
         refusal=("embed_positions",)),
    # ------------------------------------------------------------------ vision transformers
    Case("vit", vision(tf.ViTForImageClassification, tf.ViTConfig, **VIT, **NO_DROPOUT),
         (4, 3, 8, 8), "exact"),
    Case("vit_dropout", vision(tf.ViTForImageClassification, tf.ViTConfig, **VIT, **DROPOUT),
         (4, 3, 8, 8), "exact", train=True),
    Case("deit_distilled", vision(tf.DeiTForImageClassificationWithTeacher, tf.DeiTConfig,
                                  **VIT, **NO_DROPOUT), (3, 3, 8, 8), "exact"),
    Case("beit_relative_bias_batch_eq_heads",
         vision(tf.BeitForImageClassification, tf.BeitConfig, **VIT, **NO_DROPOUT,
                use_relative_position_bias=True, use_mean_pooling=True,
                layer_scale_init_value=0.5), (2, 3, 8, 8), "exact"),
    Case("beit_drop_path", vision(tf.BeitForImageClassification, tf.BeitConfig, **TWO_LAYER_VIT,
                                  **NO_DROPOUT, drop_path_rate=0.5, layer_scale_init_value=0.5),
         (3, 3, 8, 8), "exact", train=True),
    Case("dinov2_layer_scale", vision(tf.Dinov2ForImageClassification, tf.Dinov2Config,
                                      **VIT, **NO_DROPOUT, layerscale_value=0.5),
         (4, 3, 8, 8), "exact"),
    Case("dinov2_drop_path", vision(tf.Dinov2ForImageClassification, tf.Dinov2Config,
                                    **TWO_LAYER_VIT, **NO_DROPOUT, layerscale_value=0.5,
                                    drop_path_rate=0.5), (4, 3, 8, 8), "exact", train=True),
    Case("clip_vision_position_ids", vision(tf.CLIPVisionModel, tf.CLIPVisionConfig,
                                            output="pooler_output", image_size=8, patch_size=4,
                                            hidden_size=8, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=12),
         (4, 3, 8, 8), "exact"),
    Case("swin_window_bias", vision(tf.SwinForImageClassification, tf.SwinConfig,
                                    image_size=8, patch_size=2, embed_dim=8, depths=[1],
                                    num_heads=[2], window_size=2, mlp_ratio=1.5,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
         (2, 3, 8, 8), "refused"),
    # ------------------------------------------------------------------ CNNs
    Case("convnext_layer_scale_batch_eq_channels",
         vision(tf.ConvNextForImageClassification, tf.ConvNextConfig, **CONVNEXT),
         (4, 3, 16, 16), "exact"),
    Case("convnext_drop_path", vision(tf.ConvNextForImageClassification, tf.ConvNextConfig,
                                      **CONVNEXT, drop_path_rate=0.5),
         (3, 3, 16, 16), "exact", train=True),
    Case("convnextv2_grn", vision(tf.ConvNextV2ForImageClassification, tf.ConvNextV2Config,
                                  **CONVNEXT), (8, 3, 16, 16), "exact"),
    Case("resnet_eval", vision(tf.ResNetForImageClassification, tf.ResNetConfig, **RESNET),
         (4, 3, 16, 16), "exact"),
    Case("resnet_train_batchnorm", vision(tf.ResNetForImageClassification, tf.ResNetConfig,
                                          **RESNET), (4, 3, 16, 16), "refused", train=True,
         refusal=("BatchNorm",)),
    Case("bit_weight_standardized", vision(tf.BitForImageClassification, tf.BitConfig,
                                           num_channels=3, embedding_size=4,
                                           hidden_sizes=[4, 8], depths=[1, 1], num_groups=2,
                                           layer_type="preactivation"),
         (4, 3, 16, 16), "exact"),
    Case("poolformer_layer_scale", vision(tf.PoolFormerForImageClassification,
                                          tf.PoolFormerConfig, num_channels=3,
                                          hidden_sizes=[4, 8], depths=[1, 1],
                                          num_encoder_blocks=2, patch_sizes=[3, 3],
                                          strides=[2, 2], padding=[1, 1], pool_size=3,
                                          layer_scale_init_value=0.5, drop_path_rate=0.3),
         (3, 3, 8, 8), "exact", train=True),
]


def names_a_module(message: str, model: nn.Module) -> bool:
    """The message names a module of the model: ``path (Type)``, or a listed path of a module
    with parameters of its own (``BatchNorm in training mode (a.b, a.c)``)."""
    modules = dict(model.named_modules())
    for path, type_name in re.findall(r"([\w.]+) \((\w+)\)", message):
        if path in modules and type(modules[path]).__name__ == type_name:
            return True
    tokens = set(re.split(r"[\s,():;]+", message))
    return any(path in tokens for path, m in modules.items()
               if path and any(True for _ in m.parameters(recurse=False)))
