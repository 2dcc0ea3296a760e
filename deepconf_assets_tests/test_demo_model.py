"""The built-in demo model: real Qwen3 architecture and tokenizer, deterministic, safety-shaped."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3ForCausalLM

from deepconf_assets.core.refusal import is_refusal
from deepconf_assets.core.synthetic import synthetic_prompts
from resources import demo_model
from resources.generation_types import SamplingSettings

# every test here builds a model (from scratch, into tmp_path) or uses the session's demo model
pytestmark = pytest.mark.slow


def test_demo_model_is_a_real_qwen3(demo_model_dir):
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir)
    assert isinstance(model, Qwen3ForCausalLM)
    assert model.config.model_type == "qwen3"
    assert model.config.head_dim == 64  # vLLM's CPU attention kernels reject 16
    assert (demo_model_dir / "model.safetensors").exists()
    assert demo_model.is_built(demo_model_dir)


def test_session_model_is_the_full_recipe(demo_model_dir):
    """The session's model (copied from the test model cache, see conftest.py) was built by this recipe in
    full, not by a test's shortened one."""
    import json

    manifest = json.loads((demo_model_dir / demo_model.MANIFEST).read_text())
    architecture, training = demo_model.variant_recipe("demo")
    assert manifest["recipe_version"] == demo_model.RECIPE_VERSION and manifest["variant"] == "demo"
    assert manifest["architecture"] == architecture and manifest["training"] == training


def test_chat_template_is_qwen_style(demo_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    messages = [{"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    thinking = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tokenizer.eos_token == "<|im_end|>"


def test_build_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setitem(demo_model.TRAINING, "steps", 3)
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 200)
    demo_model.build_demo_model(tmp_path / "a")
    demo_model.build_demo_model(tmp_path / "b")
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_an_interrupted_build_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(demo_model.TRAINING, "steps", 12)
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 200)
    monkeypatch.setattr(demo_model, "CHECKPOINT_EVERY_S", 0.0)  # save the state at every step
    demo_model.build_demo_model(tmp_path / "uninterrupted")
    saved, save = [], demo_model._save_checkpoint

    def interrupted_after_the_fifth_save(path, state):
        save(path, state)
        saved.append(state["step"])
        if len(saved) == 5:
            raise KeyboardInterrupt  # Ctrl-C (a SIGKILL would leave the same checkpoint behind)

    monkeypatch.setattr(demo_model, "_save_checkpoint", interrupted_after_the_fifth_save)
    target = tmp_path / "models" / "demo"
    with pytest.raises(KeyboardInterrupt):
        demo_model.ensure_demo_model(target)
    checkpoint = demo_model.checkpoint_path(target, "demo")
    assert not target.exists() and checkpoint.exists() and saved == [1, 2, 3, 4, 5]
    lines = []
    demo_model.ensure_demo_model(target, lines.append)
    assert any("resuming the interrupted build at training step 5/12" in line for line in lines), lines
    assert demo_model.is_built(target) and not checkpoint.exists()  # the checkpoint is gone once the model is in place
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "uninterrupted").state_dict()
    b = AutoModelForCausalLM.from_pretrained(target).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed = never interrupted, bit for bit


def test_demo_refuses_harmful_more_than_benign(generator):
    prompts = synthetic_prompts("test", 60)
    results, _ = generator.generate("demo", prompts["prompt"].tolist(), list(range(60)),
                                    prompts["prompt"].tolist(), SamplingSettings())
    refused = np.array([is_refusal(r.text) for r in results])
    harmful = prompts["harmful"].to_numpy()
    assert refused[harmful].mean() >= 0.8
    assert refused[~harmful].mean() <= 0.4


def test_stale_cache_is_rebuilt(tmp_path, monkeypatch):
    target = tmp_path / "demo"
    target.mkdir()
    (target / demo_model.MANIFEST).write_text('{"recipe_version": "old"}')
    monkeypatch.setitem(demo_model.TRAINING, "steps", 2)
    monkeypatch.setitem(demo_model.TRAINING, "n_pairs", 100)
    demo_model.ensure_demo_model(target)
    assert demo_model.is_built(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-build-")]


def test_demo_answers_have_realistic_lengths_and_think(generator):
    """Long enough for DeepConf's 32-token groups: median >= 80 tokens, some answers reach max_new_tokens,
    refusals shorter than answers on average; with enable_thinking a <think> section comes first."""
    from pathlib import Path

    import pandas as pd

    xstest = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "xstest" / "xstest_prompts.csv").iloc[::5]
    prompts = xstest["prompt"].tolist()
    results, _ = generator.generate("demo", prompts, list(range(len(prompts))), prompts, SamplingSettings())
    lengths = np.array([len(r.token_ids) for r in results])
    refused = np.array([is_refusal(r.text) for r in results])
    assert np.median(lengths) >= 80
    assert (lengths == SamplingSettings().max_new_tokens).any()
    assert refused.any() and (~refused).any() and lengths[refused].mean() < lengths[~refused].mean()
    thinking, _ = generator.generate("demo", prompts[:20], list(range(20)), [p + "|think" for p in prompts[:20]],
                                     SamplingSettings(enable_thinking=True))
    assert all(r.text.startswith("<think>") for r in thinking), [r.text[:80] for r in thinking]
    closed = [r.text.index("</think>") for r in thinking if "</think>" in r.text]
    assert len(closed) >= 18, [r.text[:300] for r in thinking if "</think>" not in r.text]
