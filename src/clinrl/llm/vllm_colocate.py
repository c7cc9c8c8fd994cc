"""vLLM colocated rollouts for TRL's GRPO: weight sync that works on every vLLM build, and a clean exit.

TRL 1.16 pushes the policy into the colocated engine with ``model.load_weights([(name, tensor)])``, one
parameter at a time. That works only while vLLM's layers still hold their checkpoint-format parameters.
From vLLM 0.32 (and on its CPU build, which repacks linear weights for its GEMM kernels after loading) the
processed parameters no longer carry a ``weight_loader``, and the first sync after step 0 fails with
"'Parameter' object has no attribute 'weight_loader'". Worse, a build where the copy silently lands in a
stale buffer would keep sampling from the *initial* policy — every rollout off-policy.

:func:`install_weight_sync` replaces the trainer's sync, in colocate mode only, by vLLM's own in-place
reload protocol (``initialize_layerwise_reload`` → ``load_weights`` of all parameters →
``finalize_layerwise_reload``), which re-runs each layer's post-load processing — on vLLM's CPU build and
on vLLM releases newer than TRL supports (> 0.31). On a GPU with a vLLM that TRL supports, TRL's own,
tested sync is kept. The reload buffers the
tensors of a layer until the layer is complete, so each tensor is cloned: under ZeRO-3 TRL yields a
parameter's data only while it is gathered.

:func:`shutdown` stops the engine and its model-parallel groups before our process group is destroyed;
otherwise vLLM's exit hook later destroys a group that is already gone and prints a traceback.

The test that rollouts come from the current policy is TRL's own ``sampling/sampling_logp_difference``
(vLLM's log-probabilities of the sampled tokens against the trainer's): ``tests/engines/test_vllm_grpo.py``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from clinrl.errors import ClinrlError

__all__ = ["colocated_engine", "engine_options", "install_weight_sync", "shutdown"]

# vllm.LLM keywords a recipe may add in colocate mode (``vllm_engine:``); TRL sets the others itself.
ENGINE_OPTIONS = (
    "enforce_eager",
    "dtype",
    "kv_cache_memory_bytes",
    "swap_space",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "max_num_seqs",
    "compilation_config",
)


def colocated_engine(trainer: Any) -> Any:
    """The trainer's colocated ``vllm.LLM``, or None (no vLLM, or server mode)."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or getattr(generation, "mode", None) != "colocate":
        return None
    return getattr(generation, "llm", None)


@contextlib.contextmanager
def engine_options(options: Mapping[str, Any] | None) -> Iterator[None]:
    """While the trainer is built, add ``options`` to TRL's ``vllm.LLM(...)`` call for the colocated engine.

    TRL 1.16 fixes that call's keywords; on a CPU ``enforce_eager: true`` cuts the engine's start from
    about 80 s to 25 s (no graph compilation) and on a GPU a user may want another ``dtype`` or KV-cache
    size. Unknown keys raise ClinrlError before anything loads."""
    if not options:
        yield
        return
    unknown = sorted(set(options) - set(ENGINE_OPTIONS))
    if unknown:
        raise ClinrlError(f"vllm_engine: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(ENGINE_OPTIONS)}")
    from trl.generation import vllm_generation

    original = vllm_generation.LLM
    vllm_generation.LLM = functools.partial(original, **dict(options))
    try:
        yield
    finally:
        vllm_generation.LLM = original


def _layerwise_reload() -> tuple[Any, Any] | None:
    try:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload
    except ImportError:
        return None
    return initialize_layerwise_reload, finalize_layerwise_reload


def _cloned(weights: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    for name, tensor in weights:
        yield name, tensor.detach().clone()


def _reload_sync(generation: Any) -> None:
    """Push every policy parameter into the colocated engine through vLLM's in-place reload."""
    initialize, finalize = _layerwise_reload()  # type: ignore[misc]
    if getattr(generation, "enable_sleep_mode", False):
        generation.llm.wake_up(tags=["weights"])
        generation._llm_weights_sleeping = False
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
    model = runner.model
    initialize(model)
    model.load_weights(_cloned(generation._iter_named_params()))
    finalize(model, runner.model_config)
    _reprocess_tied(model)
    generation.llm.reset_prefix_cache()


def _reprocess_tied(model: Any) -> None:
    """Re-run the post-load processing of every module that shares its weight with another.

    The layerwise reload processes a tied tensor once, for one of its owners. On vLLM's CPU build the
    embedding and the tied LM head each pack the weight into a GEMM handle of their own, so the LM head
    kept computing logits with the *old* embedding (log-probabilities off by up to 0.13 after 5 GRPO steps
    of a tiny model; 1e-6 with this)."""
    owners: dict[int, list[Any]] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is not None and hasattr(weight, "data_ptr") and weight.numel():
            owners.setdefault(weight.data_ptr(), []).append(module)
    for modules in owners.values():
        if len(modules) < 2:
            continue
        for module in modules:
            method = getattr(module, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(module)


def _needs_reload_sync() -> bool:
    """True on vLLM's CPU build and on vLLM newer than TRL 1.16 supports (> 0.31)."""
    import vllm
    from packaging.version import Version
    from vllm.platforms import current_platform

    return current_platform.is_cpu() or Version(vllm.__version__).release[:2] > (0, 31)


def install_weight_sync(trainer: Any) -> bool:
    """Make the trainer's colocated vLLM weight sync use vLLM's reload protocol where TRL's does not work
    (module docstring). Returns True when the sync was replaced."""
    engine = colocated_engine(trainer)
    if engine is None or _layerwise_reload() is None or not _needs_reload_sync():
        return False
    generation = trainer.vllm_generation
    generation.sync_weights = types.MethodType(_reload_sync, generation)
    return True


def shutdown(trainer: Any) -> None:
    """Stop the colocated engine (if any) and vLLM's model-parallel groups; safe to call twice."""
    engine = colocated_engine(trainer)
    if engine is None:
        return
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    try:
        from vllm.distributed.parallel_state import destroy_model_parallel

        destroy_model_parallel()
    except (ImportError, AssertionError, ValueError):
        pass
    trainer.vllm_generation.llm = None
    gc.collect()
