"""The built-in `demo` model: a real Qwen3ForCausalLM with a real byte-level BPE tokenizer and a
Qwen-style chat template, built offline and deterministically, then fitted briefly on synthetic
(prompt -> refusal | helpful answer) pairs.

It refuses most harmful requests, answers most benign ones, and is unsure on `borderline` requests
(trained to answer half of them) and on unfamiliar prompts, so every confidence category occurs.
It is a stand-in for a Qwen3 checkpoint on machines without GPU or network, not a safety model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from deepconf_assets.core.synthetic import synthetic_prompts


def _recipe_version() -> str:
    """Hash of this recipe and the synthetic prompts it trains on: edit either and the cache rebuilds."""
    from deepconf_assets.core import synthetic

    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(synthetic.__file__).read_bytes())
    return "demo-" + digest.hexdigest()[:12]


RECIPE_VERSION = _recipe_version()
MANIFEST = "demo_manifest.json"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]

# Qwen3's template, reduced to plain user/assistant turns; `enable_thinking=False` pre-fills an empty
# think block exactly as Qwen3 does.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

# Refusals and answers are composed from parts with similar variety, so neither kind of response is
# systematically more confident than the other.
REFUSAL_OPENERS = [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't help you {task}.",
    "I cannot assist with requests to {task}.",
    "I won't help with that.",
    "Sorry, I can't do that.",
]
REFUSAL_REASONS = [
    "", " It could seriously hurt someone.", " It may be illegal.",
    " If someone is in danger, please contact local emergency services.",
    " I am happy to talk about staying safe instead.", " Please ask me something else.",
]
ANSWERS = [
    "Sure! To {task}, first {a}. Then {b}.",
    "Here is a simple way to {task}: {a}, then {b}.",
    "Good question. To {task}, you can {a} and {b}.",
    "Of course. First, {a}. Next, {b}.",
]
STEPS = [
    "gather what you need", "read the instructions carefully", "ask someone with experience",
    "take it one step at a time", "check the result", "look up a trusted guide",
]

ARCHITECTURE = dict(
    hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=64, max_position_embeddings=1024, rope_theta=10000.0,
    tie_word_embeddings=True,
)
TRAINING = dict(vocab_size=1024, n_pairs=4000, steps=450, batch_size=32, lr=3e-3, seed=0,
                label_noise=0.04, borderline_refusal_share=0.5)
# Built-in model partitions: `demo`, and `demo-small` (one narrow layer, trained less) so that a
# machine without weights still has two sizes to compare and to backfill across.
VARIANTS = {
    "demo": {"architecture": {}, "training": {}},
    "demo-small": {"architecture": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=1, head_dim=32),
                   "training": dict(steps=250)},
}


def variant_recipe(variant: str) -> tuple[dict, dict]:
    """(architecture, training) of a built-in variant, read at build time."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown demo variant {variant!r}; expected one of {tuple(VARIANTS)}")
    return {**ARCHITECTURE, **VARIANTS[variant]["architecture"]}, {**TRAINING, **VARIANTS[variant]["training"]}


def training_pairs(n_pairs: int = TRAINING["n_pairs"], seed: int = TRAINING["seed"]) -> list[tuple[str, str, bool]]:
    """(prompt, response, response_is_refusal) from the synthetic `train` split."""
    rng = np.random.default_rng(seed)
    pairs = []
    for row in synthetic_prompts("train", n_pairs).itertuples(index=False):
        if row.category == "borderline":
            refuse = rng.random() < TRAINING["borderline_refusal_share"]
        else:
            refuse = bool(row.harmful) != (rng.random() < TRAINING["label_noise"])
        if refuse:
            opener = REFUSAL_OPENERS[rng.integers(len(REFUSAL_OPENERS))].format(task=row.task)
            response = opener + REFUSAL_REASONS[rng.integers(len(REFUSAL_REASONS))]
        else:
            a, b = rng.choice(len(STEPS), size=2, replace=False)
            response = ANSWERS[rng.integers(len(ANSWERS))].format(task=row.task, a=STEPS[a], b=STEPS[b])
        pairs.append((row.prompt, response, refuse))
    return pairs


def _build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], padding_side="left",
    )
    fast.add_tokens(THINK_TOKENS)  # like Qwen3: added tokens, not special (kept in decoded text)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _encode_pairs(tokenizer, pairs) -> list[tuple[list[int], int]]:
    """Token ids of prompt + response + <|im_end|>, and where the response starts (loss mask)."""
    encoded = []
    for prompt, response, _ in pairs:
        prefix = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True,
            enable_thinking=False,
        )
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]
        encoded.append((prefix_ids + response_ids, len(prefix_ids)))
    return encoded


def _train(model, encoded, pad_id: int, log, training: dict) -> float:
    import torch

    rng = np.random.default_rng(training["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=training["lr"], total_steps=training["steps"])
    model.train()
    loss_value = float("nan")
    started = time.monotonic()
    for step in range(training["steps"]):
        batch = [encoded[i] for i in rng.choice(len(encoded), training["batch_size"], replace=False)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, start) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, start : len(ids)] = torch.tensor(ids[start:])
            mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        if log and (step + 1) % 100 == 0:
            log(f"demo model: step {step + 1}/{training['steps']} loss {loss_value:.3f} "
                f"({time.monotonic() - started:.0f}s)")
    model.eval()
    return loss_value


def build_demo_model(out_dir: Path, log=None, variant: str = "demo") -> dict:
    """Build a demo variant into `out_dir` (tokenizer, safetensors weights, generation config)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    architecture, training = variant_recipe(variant)
    torch.manual_seed(training["seed"])
    pairs = training_pairs(training["n_pairs"], training["seed"])
    tokenizer = _build_tokenizer([p for p, _, _ in pairs] + [r for _, r, _ in pairs], training["vocab_size"])
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(vocab_size=len(tokenizer), bos_token_id=pad_id, eos_token_id=eos_id,
                         pad_token_id=pad_id, **architecture)
    model = Qwen3ForCausalLM(config)
    final_loss = _train(model, _encode_pairs(tokenizer, pairs), pad_id, log, training)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True,
                     temperature=0.6, top_p=0.95, top_k=50).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {"recipe_version": RECIPE_VERSION, "variant": variant, "architecture": architecture, "training": training,
                "final_loss": round(final_loss, 4), "parameters": sum(p.numel() for p in model.parameters())}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def is_built(model_dir: Path, variant: str = "demo") -> bool:
    manifest = model_dir / MANIFEST
    if not manifest.exists():
        return False
    recorded = json.loads(manifest.read_text())
    return recorded.get("recipe_version") == RECIPE_VERSION and recorded.get("variant", "demo") == variant


def ensure_demo_model(model_dir: Path, log=None, variant: str = "demo") -> Path:
    """Return the cached demo model, building it (about a minute on 2 cores) when absent or stale.

    Built in a temporary folder and moved into place, so a killed build never leaves half a model
    and two concurrent builders do not clash.
    """
    if is_built(model_dir, variant):
        return model_dir
    if log:
        log(f"building the {variant} model into {model_dir} (recipe {RECIPE_VERSION})")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=model_dir.parent))
    try:
        build_demo_model(staging, log, variant)
        if model_dir.exists() and not is_built(model_dir, variant):
            shutil.rmtree(model_dir)
        try:
            os.rename(staging, model_dir)
        except OSError:
            if not is_built(model_dir, variant):  # someone else's build won the race only if it is complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir
