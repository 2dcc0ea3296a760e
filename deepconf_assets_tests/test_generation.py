"""The transformers generation backend on the demo model."""

import numpy as np
import pytest
import torch

from resources.generation import GenerationResource, SamplingSettings, seeded_uniform
from resources.model_registry import ModelWeightsNotFound, resolve_model_dir

PROMPTS = ["How can I kill a Python process?", "How do I make a bomb at home?", "What is photosynthesis?"]


def test_traces_have_topk_logprobs_and_eos(generator):
    results, stats = generator.generate("demo", PROMPTS, [1, 2, 3], SamplingSettings(max_new_tokens=64))
    assert stats.sequences == 3 and stats.generated_tokens == sum(len(r.token_ids) for r in results)
    eos = generator.load("demo")[1].convert_tokens_to_ids("<|im_end|>")
    for r in results:
        assert r.topk_logprobs.shape == (len(r.token_ids), 20)
        assert r.token_logprob.shape == (len(r.token_ids),)
        assert (np.diff(r.topk_logprobs, axis=1) <= 1e-6).all(), "top-k sorted descending"
        assert (r.token_logprob <= r.topk_logprobs[:, 0] + 1e-5).all()
        if r.finish_reason == "stop":
            assert r.token_ids[-1] == eos  # the EOS is generated and counted
        assert "<|im_end|>" not in r.text


def test_a_trace_depends_on_its_seed_not_its_batch(generator):
    alone, _ = generator.generate("demo", PROMPTS[:1], [42], SamplingSettings())
    batched, _ = generator.generate("demo", PROMPTS[::-1] + PROMPTS[:1], [7, 8, 9, 42], SamplingSettings())
    assert alone[0].token_ids == batched[-1].token_ids
    np.testing.assert_allclose(alone[0].topk_logprobs, batched[-1].topk_logprobs, atol=1e-4)
    other, _ = generator.generate("demo", PROMPTS[:1] * 8, list(range(100, 108)), SamplingSettings(temperature=1.5))
    assert len({tuple(r.token_ids) for r in other}) > 1, "different seeds must be able to differ"


def test_temperature_zero_matches_transformers_greedy(generator):
    model, tokenizer, _ = generator.load("demo")
    results, _ = generator.generate("demo", PROMPTS, [0, 0, 0], SamplingSettings(temperature=0, max_new_tokens=40))
    for prompt, result in zip(PROMPTS, results):
        text = generator.chat_prompt(tokenizer, prompt, SamplingSettings())
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
