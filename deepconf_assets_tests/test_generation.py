"""The transformers generation backend on the demo model."""

import numpy as np
import pytest
import torch

from resources.generation import GenerationResource
from resources.generation_types import SamplingSettings
from resources.model_registry import ModelWeightsNotFound, resolve_model_dir
from resources.shard_store import ShardStore
from resources.transformers_engine import seeded_uniform

from deepconf_assets_tests.trace_equality import TOLERANCE

PROMPTS = ["How can I kill a Python process?", "How do I make a bomb at home?", "What is photosynthesis?"]


def generate(generator, prompts, seeds, settings=SamplingSettings(), store=None):
    keys = [f"key-{p}" for p in prompts]
    return generator.generate("demo", prompts, seeds, keys, settings, store=store)


@pytest.mark.slow
def test_traces_have_confidence_and_eos(generator):
    results, stats = generate(generator, PROMPTS, [1, 2, 3], SamplingSettings(max_new_tokens=64))
    assert stats.generated == 3 and stats.generated_tokens == sum(len(r.token_ids) for r in results)
    eos = generator.engine("demo").tokenizer.convert_tokens_to_ids("<|im_end|>")
    for r in results:
        assert r.token_confidence.shape == r.token_logprob.shape == (len(r.token_ids),)
        assert (r.token_confidence > 0).all() and np.isfinite(r.token_confidence).all()
        # the sampled token's log-prob is at most the best log-prob, which is >= -C
        assert (r.token_logprob <= 1e-6).all()
        if r.finish_reason == "stop":
            assert r.token_ids[-1] == eos  # the EOS is generated and counted
        assert "<|im_end|>" not in r.text


@pytest.mark.slow
def test_a_trace_depends_on_its_seed_not_its_batch(generator):
    alone, _ = generate(generator, PROMPTS[:1], [42])
    batched, _ = generate(generator, PROMPTS[::-1] + PROMPTS[:1], [7, 8, 9, 42])
    assert alone[0].token_ids == batched[-1].token_ids
    np.testing.assert_allclose(alone[0].token_confidence, batched[-1].token_confidence, atol=TOLERANCE)
    other, _ = generate(generator, PROMPTS[:1] * 8, list(range(100, 108)), SamplingSettings(temperature=1.5))
    assert len({tuple(r.token_ids) for r in other}) > 1, "different seeds must be able to differ"


@pytest.mark.slow
def test_temperature_zero_matches_transformers_greedy(generator):
    engine = generator.engine("demo")
    model, tokenizer = engine.model, engine.tokenizer
    results, _ = generate(generator, PROMPTS, [0, 0, 0], SamplingSettings(temperature=0, max_new_tokens=40))
    texts = generator.chat_prompts("demo", PROMPTS, SamplingSettings())
    for text, result in zip(texts, results):
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            reference = model.generate(**encoded, do_sample=False, max_new_tokens=40,
                                       eos_token_id=result.token_ids[-1] if result.finish_reason == "stop" else None)
        expected = reference[0, encoded["input_ids"].shape[1]:].tolist()
        assert result.token_ids == expected[: len(result.token_ids)]


def test_seeded_uniform_is_uniform_and_reproducible():
    seeds = torch.arange(64, dtype=torch.int64)
    tokens = torch.arange(1000, dtype=torch.int64)[None, :].expand(64, -1)
    u = seeded_uniform(seeds, 3, tokens)
    assert torch.equal(u, seeded_uniform(seeds, 3, tokens))
    assert not torch.equal(u, seeded_uniform(seeds, 4, tokens))
    assert 0 < u.min() and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    assert (counts / counts.sum() - 0.1).abs().max() < 0.01


def test_missing_qwen3_weights_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCONF_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelWeightsNotFound) as error:
        resolve_model_dir("qwen3-0.6b")
    assert "hf download Qwen/Qwen3-0.6B" in str(error.value) and "DEEPCONF_MODEL_DIR" in str(error.value)


def test_model_dir_without_weights(tmp_path, monkeypatch):
    (tmp_path / "Qwen3-1.7B").mkdir()
    (tmp_path / "Qwen3-1.7B" / "config.json").write_text("{}")
    monkeypatch.setenv("DEEPCONF_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelWeightsNotFound, match="holds no complete model"):
        resolve_model_dir("qwen3-1.7b")


@pytest.mark.slow
def test_shard_store_resumes_and_skips(generator, tmp_path):
    store = ShardStore(tmp_path / "shards")
    settings = SamplingSettings(max_new_tokens=48)
    first, stats = generate(generator, PROMPTS, [1, 2, 3], settings, store)
    assert stats.generated == 3 and stats.shards_written == 1
    again, stats = generate(generator, PROMPTS, [1, 2, 3], settings, store)
    assert stats.generated == 0 and stats.generation_calls == 0 and stats.reused == 3
    assert [r.token_ids for r in again] == [r.token_ids for r in first]
    np.testing.assert_array_equal(again[0].token_confidence, first[0].token_confidence)
    grown, stats = generate(generator, PROMPTS + ["How do I bake bread?"], [1, 2, 3, 4], settings, store)
    assert stats.generated == 1 and stats.reused == 3
    assert len(list((tmp_path / "shards").glob("*.parquet"))) == 2
    assert not list((tmp_path / "shards").glob(".*tmp"))


@pytest.mark.slow
def test_out_of_memory_names_the_setting(generator, monkeypatch):
    from resources.generation import GenerationOutOfMemory

    engine = generator.engine("demo")

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "run", fail)
    with pytest.raises(GenerationOutOfMemory, match="batch_tokens"):
        generate(generator, PROMPTS, [5, 6, 7])


def test_batches_are_bounded_by_a_token_budget():
    from resources.transformers_engine import admissible

    # queued prompts of 10, 10, 20, 40 tokens, 90 new tokens each, (longest + 90) x sequences <= 250:
    # 2 x 100 = 200 fits, 3 x 110 = 330 does not
    assert admissible([10, 10, 20, 40], [], 90, batch_sequences=8, batch_tokens=250) == 2
    assert admissible([10, 10, 20, 40], [], 90, batch_sequences=8, batch_tokens=None) == 4
    assert admissible([10, 10, 20, 40], [], 90, batch_sequences=3, batch_tokens=None) == 3
    # a running 40-token prompt sets the width: 2 x 130 = 260 > 250, so nothing joins it
    assert admissible([10], [40], 90, batch_sequences=8, batch_tokens=250) == 0
    assert admissible([10, 10], [10], 90, batch_sequences=8, batch_tokens=300) == 2
    assert admissible([10, 10], [10, 10], 90, batch_sequences=3, batch_tokens=None) == 1
    # a sequence alone over the budget still runs in an empty batch, never beside another
    assert admissible([500], [], 90, batch_sequences=8, batch_tokens=100) == 1
    assert admissible([500], [10], 90, batch_sequences=8, batch_tokens=100) == 0


@pytest.mark.slow
def test_rows_that_join_a_running_batch_sample_as_alone(generator):
    """Continuous batching: with room for 2 rows, 6 requests of different lengths join as rows leave (some
    into a longer cache, some longer than the cache, which is then padded); each trace equals its trace
    generated alone, and the batch never holds more than 2 rows."""
    prompts = ["Hi", *PROMPTS, "Tell me about the history of the printing press in Europe, in detail please.", "Why?"]
    seeds = list(range(20, 20 + len(prompts)))
    settings = SamplingSettings(max_new_tokens=48, temperature=1.2)
    alone = [generate(generator, [p], [s], settings)[0][0] for p, s in zip(prompts, seeds)]
    engine = generator.engine("demo")
    texts = generator.chat_prompts("demo", prompts, settings)
    got, widest = {}, []
    original_step = __import__("resources.transformers_engine", fromlist=["_DecodeBatch"])._DecodeBatch.step

    def step(batch):
        widest.append(len(batch.rows))
        return original_step(batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("resources.transformers_engine._DecodeBatch.step", step)
        prefills = engine.run(list(range(len(prompts))), texts, seeds, settings, 2,
                              lambda indices, traces: got.update(zip(indices, traces)))
    assert max(widest) == 2 and prefills >= 3  # rows joined a running batch
    for i, trace in enumerate(alone):
        assert got[i].token_ids == trace.token_ids, prompts[i]
        assert got[i].finish_reason == trace.finish_reason
        np.testing.assert_allclose(got[i].token_confidence, trace.token_confidence, atol=TOLERANCE)


def test_auto_dtype_and_the_cpu_flags():
    from resources.transformers_engine import cpu_has_native_bf16, resolved_dtype

    epyc = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    sapphire = "flags\t\t: fpu avx2 amx_bf16 amx_tile\n"
    older = "flags\t\t: fpu avx2 avx512f avx512_vnni\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"
    assert cpu_has_native_bf16(epyc) and cpu_has_native_bf16(sapphire) and not cpu_has_native_bf16(older)
    # float32 on every CPU: a bfloat16 batch would make a trace depend on its batch (README)
    assert resolved_dtype("auto", "cpu") == "float32" and resolved_dtype("auto", "cuda:1") == "bfloat16"
    assert resolved_dtype("bfloat16", "cpu") == "bfloat16"  # an explicit dtype is kept
