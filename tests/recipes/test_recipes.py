"""Every recipe x algorithm preset resolves, validates and dry-runs in-process (no Ray); the Qwen3 recipes
carry the paper's hyper-parameters (METHOD.md section 5) and fit their GPUs by the plan's estimate."""

import pytest
import ray

from rest.config.load import CONF_DIR, RECIPES_DIR, available, load_config
from rest.config.plan import MODEL_SHAPES, actor_memory, model_shape, rollout_memory, shape_from_config
from rest.config.validate import ConfigError
from rest.main import main

RECIPES = available(RECIPES_DIR)
ALGORITHMS = available(CONF_DIR / "algorithm")
QWEN3 = {"bfcl_qwen3_1.7b": 1, "bfcl_qwen3_4b": 1, "bfcl_qwen3_8b": 2, "bfcl_qwen3_14b": 4}  # recipe -> vLLM TP
# The GPU recipes book 4 CPUs per worker (up to 32 per node); validation checks them against
# trainer.cpus_per_node, which defaults to this machine's cores: the tests declare the GPU node they target.
GPU_NODE = "trainer.cpus_per_node=32"


def test_the_recipes_and_presets_exist():
    assert set(QWEN3) | {"tiny_cpu", "smollm_cpu"} <= set(RECIPES)
    assert "base" not in RECIPES  # the shared part of the Qwen3 recipes is not a recipe of its own
    assert set(ALGORITHMS) == {"rest", "rest_static", "grpo", "drgrpo", "dapo"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_and_algorithm_dry_runs(recipe, algorithm, capsys):
    assert main([f"+recipe={recipe}", f"algorithm={algorithm}", GPU_NODE, "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert f"algorithm: {algorithm} " in out
    assert "actor rank:" in out and "rollout TP rank:" in out  # the memory estimate (model size known)
    assert "DOES NOT FIT" not in out
    assert not ray.is_initialized()


@pytest.mark.parametrize("recipe, tp", QWEN3.items())
def test_qwen3_recipes_carry_the_paper_setup(recipe, tp):
    cfg = load_config([f"+recipe={recipe}", GPU_NODE])
    size = recipe.removeprefix("bfcl_qwen3_")
    assert cfg.model.path == f"Qwen/Qwen3-{size.upper()}"
    assert cfg.algorithm.name == "rest" and cfg.algorithm.kl_coef == 0.0
    assert cfg.actor.lr == pytest.approx(1e-6) and cfg.actor.weight_decay == pytest.approx(0.01)
    assert (cfg.data.train_batch_size, cfg.rollout.n, cfg.actor.ppo_mini_batch_size) == (512, 4, 64)
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (2048, 2048)
    assert (cfg.trainer.total_epochs, cfg.trainer.total_steps, cfg.actor.ppo_epochs) == (15, None, 1)
    assert cfg.rollout.temperature == 1.0
    assert (cfg.trainer.test_freq, cfg.trainer.save_freq) == (15, 15)
    assert cfg.validation.benchmarks == ["apibank", "bfcl"]
    assert cfg.data.source == "rlla" and cfg.data.path
    assert (cfg.trainer.device, cfg.trainer.gpus_per_node, cfg.rollout.tensor_parallel_size) == ("cuda", 8, tp)
    assert cfg.model.gradient_checkpointing and cfg.model.attn_implementation == "flash_attention_2"
    assert (cfg.actor.mixed_precision, cfg.rollout.dtype) == ("bf16", "bfloat16")
    gpus = cfg.actor.num_workers * cfg.actor.gpus_per_worker
    gpus += cfg.rollout.num_workers * cfg.rollout.gpus_per_worker * tp
    assert gpus == cfg.trainer.nnodes * cfg.trainer.gpus_per_node  # the node is used, not oversubscribed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_algorithm_override_keeps_the_recipe_and_no_kl(algorithm):
    cfg = load_config(["+recipe=bfcl_qwen3_8b", f"algorithm={algorithm}", "trainer.nnodes=2", "actor.num_workers=8",
                       "trainer.ray_address=auto", GPU_NODE])
    assert cfg.algorithm.name == algorithm and cfg.algorithm.kl_coef == 0.0
    assert (cfg.model.path, cfg.trainer.nnodes, cfg.actor.num_workers) == ("Qwen/Qwen3-8B", 2, 8)


def test_recipe_name_with_a_dot_resolves():
    assert load_config(["+recipe=bfcl_qwen3_1.7b", GPU_NODE]).trainer.experiment_name == "bfcl_qwen3_1.7b"


def test_unknown_recipe_lists_every_recipe(capsys):
    assert main(["+recipe=bfcl_qwen3_7b", "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert "bfcl_qwen3_7b" in err and all(name in err for name in RECIPES)


def test_unknown_key_under_a_recipe_is_named(capsys):
    assert main(["+recipe=bfcl_qwen3_8b", "rollout.tensor_parallel=2", "dry_run=true"]) == 2
    assert "rollout.tensor_parallel" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="actor.learning_rate"):
        load_config(["+recipe=smollm_cpu", "actor.learning_rate=1e-5"])


def test_a_recipe_that_needs_more_gpus_than_the_node_fails_validation():
    with pytest.raises(ConfigError, match="GPUs"):
        load_config(["+recipe=bfcl_qwen3_14b", "rollout.num_workers=2", GPU_NODE])


# ---- the memory estimate, by hand

def test_parameter_counts_follow_from_the_model_configs():
    qwen3_8b = {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "vocab_size": 151936,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False}
    # per layer: q,k,v,o = 4096*128*(32+2*8) + 32*128*4096 = 41.9M; MLP 3*4096*12288 = 151.0M; + 2 x V x h
    assert shape_from_config(qwen3_8b).params == 36 * (41_943_040 + 150_994_944) + 2 * 151936 * 4096
    assert shape_from_config(qwen3_8b).params == pytest.approx(MODEL_SHAPES["qwen3-8b"].params, rel=0.01)
    qwen3_14b = dict(qwen3_8b, hidden_size=5120, intermediate_size=17408, num_hidden_layers=40, num_attention_heads=40)
    assert shape_from_config(qwen3_14b).params == pytest.approx(MODEL_SHAPES["qwen3-14b"].params, rel=0.01)


def test_model_shape_from_table_name_or_local_config(tmp_path):
    assert model_shape("Qwen/Qwen3-8B") is MODEL_SHAPES["qwen3-8b"]
    assert model_shape("/shared/models/Qwen3-8B/") is MODEL_SHAPES["qwen3-8b"]
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text('{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, '
                                       '"vocab_size": 100, "num_attention_heads": 4, "tie_word_embeddings": true}')
    # attention 4 * 64 * 64, MLP 3 * 64 * 128 per layer; tied embeddings once
    assert model_shape(str(local)).params == 2 * (4 * 64 * 64 + 3 * 64 * 128) + 100 * 64
    assert model_shape(str(tmp_path / "unknown")) is None


def test_memory_estimate_for_qwen3_8b_by_hand():
    cfg = load_config(["+recipe=bfcl_qwen3_8b", GPU_NODE])
    shape = MODEL_SHAPES["qwen3-8b"]
    actor = actor_memory(cfg, shape)
    assert actor.state == pytest.approx(8.19e9 * 16 / 4)  # fp32 param + grad + 2 Adam moments over 4 ranks
    assert actor.activations == pytest.approx(4 * 4096 * 4096 * 36 * 2 + 4 * 4096 * (8 * 4096 + 4 * 12288) * 2)
    rollout = rollout_memory(cfg, shape)
    assert rollout.weights == pytest.approx(8.19e9 * 2 / 2)  # bf16 over TP 2
    # KV cache: what is left of 0.85 x 80 GiB after weights and 1 GiB; 2 (K,V) x L x kv_heads x head_dim x 2 B / TP
    assert rollout.kv_tokens == int(((0.85 * 80 - 1) * 1024**3 - 8.19e9) // (2 * 36 * 8 * 128 * 2 / 2))
