"""The reference policy pi_ref of the KL term (algorithm.kl_coef > 0).

pi_ref is the start model, frozen. The actor ranks hold it next to the policy, built by the same loader
(a frozen `rest.workers.fsdp_engine.FSDPEngine`: rank-0 loading, the same mesh, mixed precision and CPU offload), so it costs
each rank its 1/world shard of the parameters and nothing else: no gradients, no optimizer state, no
checkpoint (a resumed or restarted group rebuilds it from model.path, which is what it was). Its log-probs are
computed once per step, before the update, by `compute_ref_log_prob` (timing_s/ref).
"""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no parameter asks for a gradient: autograd records nothing through it, even if called
    outside no_grad, and an optimizer built over it would have nothing to update."""
    module.requires_grad_(False)
    return module.eval()
