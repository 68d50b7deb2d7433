"""Per-layer rules: the squared norm of every sample's gradient of one layer's own parameters.

A rule turns what a forward hook kept of a layer call (by default its input) and the gradient
of the loss w.r.t. the layer's output, received during the ordinary backward pass, into (N,)
squared norms. Squared norms add up over layers, so per-sample gradients never need to exist all
at once, and for most layers they never exist at all. One module per layer family, each
registering its rules in the table of ``registry`` (importing this package registers them all):

- ``linear``: ``nn.Linear`` on 2-D and sequence inputs.
- ``conv``: ``nn.Conv2d`` (explicit, pixel-Gram or unfold-Gram, by the cost model of
  ``conv_costs``; the fused path), with the input patches it reads from ``conv_patches``.
- ``normalisation``: GroupNorm, LayerNorm and BatchNorm (affine weight and bias).
- ``sequence``: Embedding, EmbeddingBag and MultiheadAttention.

Any other module with parameters of its own takes ``divebatch.meter.functional`` (``vmap`` of
``grad`` of the module re-run on one sample at a time) for those parameters only. The tensor
helpers the rules share, and the cost model's constants, are in ``divebatch.meter.kernels``.
Frozen parameters (``requires_grad=False``) are ignored.
"""

from divebatch.meter.rules import conv, linear, normalisation, sequence  # noqa: F401  (registers)
from divebatch.meter.rules.registry import (RULES, Capture, Rule, UnsupportedCall, has_rule,
                                            register_rule)

__all__ = ["Capture", "RULES", "Rule", "UnsupportedCall", "has_rule", "register_rule"]
