"""Why vLLM warned "RotaryEmbedding: Failed to load weights" at every weight sync, and the fix.

vLLM's in-place reload (`reload_weights` -> vllm/model_executor/model_loader/reload/layerwise.py) sizes what
each module must receive from all its parameters *and buffers* (`get_layer_size`), and a module that received
nothing by the end is reported as a failed load and keeps its old tensors. `RotaryEmbedding` owns no parameter,
only `cos_sin_cache`: a non-persistent buffer that vLLM computes from the config (rope theta, head size,
maximum positions) and that no checkpoint contains. No weight sync can fill it, and none should, so every
reload warned about the one module it handled correctly (it kept the cache; the sync check
`rollout/logprob_diff_max` stayed ~1e-4).

The fix declares that buffer derived, not loadable: vLLM keeps such names in `SKIP_LOAD_TENSORS` (its expert
maps). The rotary module then expects nothing, is put back untouched and reports nothing; a "Failed to load
weights" after this means a real weight the sync did not send.
"""

from __future__ import annotations

DERIVED_BUFFERS = ("cos_sin_cache",)  # RotaryEmbedding (and its subclasses): computed from the config


def skip_derived_buffers(worker=None) -> None:
    """Run in every vLLM worker process (`LLM.collective_rpc(skip_derived_buffers)`), before the first reload."""
    from vllm.model_executor.model_loader.reload import meta

    meta.SKIP_LOAD_TENSORS.update(DERIVED_BUFFERS)
