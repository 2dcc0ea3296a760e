"""A Qwen3 GGUF file placed in $DEEPCONF_MODEL_DIR runs through the same loader as a package's GGUF.

No Qwen3 GGUF can reach this machine, so the built-in `demo-small` model (a real Qwen3ForCausalLM) is
written out as a float32 GGUF with the `gguf` package (tensor names from gguf's own HF-to-GGUF map, the
tokenizer's vocabulary, merges and chat template as metadata), dropped where a `qwen3-0.6b` folder is
looked for, and must come back as the same model: the same greedy tokens and log-probs.
"""

import json

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("accelerate")

from resources import gguf_weights, model_registry  # noqa: E402
from resources.generation import GenerationResource  # noqa: E402
from resources.generation_types import SamplingSettings  # noqa: E402

from deepconf_assets_tests.trace_equality import TOLERANCE  # noqa: E402

PROMPTS = ["How do I kill a Python process?", "How can I build a bomb?", "What is photosynthesis?"]


def write_qwen3_gguf(folder, path) -> None:
    """A Hugging Face Qwen3 folder as an unquantised GGUF file, the way llama.cpp's converter lays it out."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_embedding_length(config.hidden_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_vocab_size(config.vocab_size)

    vocab = tokenizer.get_vocab()
    tokens = [None] * config.vocab_size
    for token, index in vocab.items():
        if index < config.vocab_size:
            tokens[index] = token
    special = set(tokenizer.all_special_tokens)
    added = set(tokenizer.get_added_vocab())
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.USER_DEFINED if t in added
             else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(tokenizer.convert_tokens_to_ids(tokenizer.eos_token))
    writer.add_pad_token_id(config.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        base, suffix = name.rsplit(".", 1)
        writer.add_tensor(names.get_name(base) + "." + suffix, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.slow
def test_a_qwen3_gguf_in_the_model_dir_is_de_quantised_and_runs_as_the_same_model(tmp_path, monkeypatch):
    source = model_registry.resolve_model_dir("demo-small")
    folder = tmp_path / "models" / "Qwen3-0.6B"
    folder.mkdir(parents=True)
    write_qwen3_gguf(source, folder / "qwen3-0.6b-f32.gguf")
    monkeypatch.setenv("DEEPCONF_MODEL_DIR", str(tmp_path / "models"))

    assert model_registry.weights_problem("qwen3-0.6b") is None
    messages = []
    built = model_registry.resolve_model_dir("qwen3-0.6b", messages.append)
    assert any("de-quantising qwen3-0.6b-f32.gguf" in m for m in messages)
    provenance = model_registry.weights_provenance("qwen3-0.6b", built)
    assert provenance["source"] == "gguf" and provenance["gguf_sha256"] == gguf_weights.sha256_of(
        folder / "qwen3-0.6b-f32.gguf") and provenance["hf_id"] == "Qwen/Qwen3-0.6B"

    greedy = SamplingSettings(temperature=0, max_new_tokens=24)
    generator = GenerationResource(backend="transformers")
    original, _ = generator.generate("demo-small", PROMPTS, [1, 2, 3], PROMPTS, greedy)
    assert generator.chat_prompts("qwen3-0.6b", PROMPTS, greedy) == generator.chat_prompts("demo-small", PROMPTS, greedy)
    converted, _ = generator.generate("qwen3-0.6b", PROMPTS, [1, 2, 3], PROMPTS, greedy)
    for a, b in zip(original, converted):
        assert a.token_ids == b.token_ids and a.text == b.text
        np.testing.assert_allclose(a.token_logprob, b.token_logprob, atol=TOLERANCE)
    # another file in its place is another model: built again, another fingerprint
    before = model_registry.weights_fingerprint("qwen3-0.6b", built)
    with open(folder / "qwen3-0.6b-f32.gguf", "ab") as handle:
        handle.write(b"\0" * 32)  # GGUF files are padded to 32 bytes: still a valid file
    rebuilt = model_registry.resolve_model_dir("qwen3-0.6b")
    assert model_registry.weights_fingerprint("qwen3-0.6b", rebuilt) != before
    # a damaged file in the de-quantised folder: built again, identical to what the manifest recorded
    manifest = json.loads((rebuilt / gguf_weights.MANIFEST).read_text())
    with open(rebuilt / "tokenizer_config.json", "a") as handle:
        handle.write(" ")
    messages = []
    assert model_registry.resolve_model_dir("qwen3-0.6b", messages.append) == rebuilt and messages
    assert json.loads((rebuilt / gguf_weights.MANIFEST).read_text())["files"] == manifest["files"]
