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

# Responses are built like a chat model's: an opener, then reasons (refusals) or a bulleted list of
# steps (answers). After each reason or step the response ends with a fixed probability, so lengths
# are geometric: a tiny model learns a constant stop rate without counting, and answers run from a
# few dozen tokens to past `max_new_tokens`, refusals being shorter on average. Refusal and answer
# openers start with two first tokens each ("I"/"Sorry", "Sure"/"Here") at equal shares: sampling
# at temperature 0.6 favours concentrated choices, so an imbalance there would tilt the decision.
REFUSAL_OPENERS = [
    "I'm sorry, but I can't help with that.",
    "I cannot assist with requests to {task}.",
    "Sorry, but I can't help you {task}.",
    "Sorry, I won't help with that.",
]
REFUSAL_REASONS = [
    "It could seriously hurt someone, and I do not want to put anyone at risk.",
    "It may be illegal where you live, and the consequences can be serious.",
    "If someone is in danger right now, please contact your local emergency services.",
    "I am happy to talk about how to stay safe instead, if that would help.",
    "Please feel free to ask me about something else that I can help with.",
    "Requests like this can cause real and lasting harm to other people.",
    "A trained professional can give you much better advice on this than I can.",
    "It might help to talk this through with a friend or someone you trust.",
    "I want to keep this conversation safe and respectful for everyone involved.",
    "There are support lines you can call for free at any time of the day or night.",
    "If you are curious about the topic in general, I can share some safety facts.",
    "Even as a joke or a test, I would rather not give instructions for this.",
]
ANSWER_OPENERS = [
    "Sure! Here is how to {task}:", "Sure, to {task}, follow these steps:",
    "Here is a simple way to {task}:", "Here are the steps to {task}:",
]
STEPS = [
    "gather everything you need before you begin", "read the instructions carefully from start to end",
    "ask someone with experience for a few tips", "take it one small step at a time and do not rush",
    "check the result and fix anything that looks wrong", "look up a trusted guide written by an expert",
    "make a short plan before you start working", "set aside enough time so you are not in a hurry",
    "keep your workspace tidy and well lit", "write down what you did so you can repeat it",
    "start with the simplest option and build from there", "test a small part first to see if it works",
    "compare two or three options before you choose", "watch a short video that shows each step",
    "keep notes of what worked for next time", "ask a friend to double check your work",
    "take a break if you get stuck and come back later", "start early in the day when you are fresh",
    "follow the safety advice printed on the label", "clean up carefully when you are done",
    "keep a backup just in case something goes wrong", "check the weather or the opening hours first",
    "set a budget you are happy with and stick to it", "celebrate when it works and share what you learned",
]
THOUGHTS_REFUSE = [
    "This could hurt someone.", "This sounds illegal.", "Helping would put people at risk.",
    "I should not give instructions for this.", "A safe reply points to help instead.",
]
THOUGHTS_ANSWER = [
    "This is an everyday request.", "Nothing here looks harmful.", "A step by step list will help.",
    "I should keep the steps practical.", "The wording sounds scary but the task is harmless.",
]

ARCHITECTURE = dict(
    hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=64, max_position_embeddings=1024, rope_theta=10000.0,
    tie_word_embeddings=True,
)
# Lengths: after each step (answers) or reason (refusals) the response goes on with probability
# `step_continue` / `reason_continue`; steps and reasons each start on a new line, so "go on" is one
# token ("\n") against the end token (sampling at temperature 0.6 favours the likelier single token). `think_share` of the pairs are trained
# with a <think> section, as Qwen3 writes with `enable_thinking`. The first `decision_tokens` of a
# response (refuse or answer) weigh `decision_weight` in the loss, so long answers do not drown the
# decision; training sequences are cut at `max_train_tokens`.
TRAINING = dict(vocab_size=1024, n_pairs=4000, steps=450, batch_size=32, lr=3e-3, seed=0,
                label_noise=0.06, borderline_refusal_share=0.5, step_continue=0.88, reason_continue=0.8,
                think_share=0.15, decision_tokens=4, decision_weight=5.0, max_train_tokens=256)
# Built-in model partitions: `demo`, and `demo-small` (one narrow layer, trained less, short answers)
# so that a machine without weights still has two sizes to compare and to backfill across.
VARIANTS = {
    "demo": {"architecture": {}, "training": {}},
    "demo-small": {"architecture": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=1, head_dim=32),
                   "training": dict(steps=250, label_noise=0.04, step_continue=0.0, reason_continue=0.0, think_share=0.0,
                                    decision_weight=1.0)},
}


def variant_recipe(variant: str) -> tuple[dict, dict]:
    """(architecture, training) of a built-in variant, read at build time."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown demo variant {variant!r}; expected one of {tuple(VARIANTS)}")
    return {**ARCHITECTURE, **VARIANTS[variant]["architecture"]}, {**TRAINING, **VARIANTS[variant]["training"]}


def _pick(rng: np.random.Generator, pool: list[str], keep_going: float) -> list[str]:
    """One item of `pool`, then another (distinct) with probability `keep_going` each time."""
    order = rng.permutation(len(pool))
    count = 1
    while count < len(pool) and rng.random() < keep_going:
        count += 1
    return [pool[i] for i in order[:count]]


def _response(rng: np.random.Generator, task: str, refuse: bool, training: dict) -> str:
    if refuse:
        opener = REFUSAL_OPENERS[rng.integers(len(REFUSAL_OPENERS))].format(task=task)
        response = "\n".join([opener, *_pick(rng, REFUSAL_REASONS, training["reason_continue"])])
    else:
        opener = ANSWER_OPENERS[rng.integers(len(ANSWER_OPENERS))].format(task=task)
        steps = _pick(rng, STEPS, training["step_continue"])
        response = opener + "".join(f"\n- {step[0].upper()}{step[1:]}." for step in steps)
    if rng.random() < training["think_share"]:
        thoughts = _pick(rng, THOUGHTS_REFUSE if refuse else THOUGHTS_ANSWER, 0.5)
        response = "<think>\nThe user wants to " + task + ". " + " ".join(thoughts) + "\n</think>\n\n" + response
    return response


def training_pairs(training: dict = TRAINING) -> list[tuple[str, str, bool]]:
    """(prompt, response, response_is_refusal) from the synthetic `train` split."""
    rng = np.random.default_rng(training["seed"])
    pairs = []
    for row in synthetic_prompts("train", training["n_pairs"]).itertuples(index=False):
        if row.category == "borderline":
            refuse = rng.random() < training["borderline_refusal_share"]
        else:
            refuse = bool(row.harmful) != (rng.random() < training["label_noise"])
        pairs.append((row.prompt, _response(rng, row.task, refuse, training), refuse))
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


def _encode_pairs(tokenizer, pairs, max_tokens: int) -> list[tuple[list[int], int]]:
    """Token ids of prompt + response + <|im_end|>, and where the response starts (loss mask)."""
    encoded = []
    for prompt, response, _ in pairs:
        prefix = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True,
            enable_thinking=response.startswith("<think>"),
        )
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]
        encoded.append(((prefix_ids + response_ids)[:max_tokens], len(prefix_ids)))
    return encoded


BUILD_PROGRESS_EVERY_S = 10.0  # a progress line (with an ETA) at least this often while training
# the training state is saved this often, so an interrupted build resumes where it stopped
CHECKPOINT_EVERY_S = float(os.environ.get("DEEPCONF_BUILD_CHECKPOINT_S", "30"))


def checkpoint_path(model_dir: Path, variant: str) -> Path:
    """Where an unfinished build of `variant` keeps its training state (beside the model folder, so it
    outlives the build's temporary folder; named by the recipe, so another recipe never resumes from it)."""
    return Path(model_dir).parent / f".{variant}-{RECIPE_VERSION}.checkpoint.pt"


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(state, staging)
    os.replace(staging, path)  # a build killed while saving keeps the previous checkpoint


def _train(model, encoded, pad_id: int, log, training: dict, checkpoint: Path | None = None) -> float:
    import torch

    rng = np.random.default_rng(training["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=training["lr"], total_steps=training["steps"])
    model.train()
    loss_value = float("nan")
    started, logged = time.monotonic(), 0.0
    # draw 4 batches at once and split them by length: less padding, batches still mixed
    group = min(4 * training["batch_size"], len(encoded))
    batches: list = []
    first = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state, batches, first, loss_value = state["rng"], state["batches"], state["step"], state["loss"]
        torch.set_rng_state(state["torch_rng"])
        if log:
            log(f"demo model: resuming the interrupted build at training step {first}/{training['steps']} ({checkpoint})")
    saved = time.monotonic()
    for step in range(first, training["steps"]):
        if checkpoint is not None and step > first and time.monotonic() - saved >= CHECKPOINT_EVERY_S:
            _save_checkpoint(checkpoint, {
                "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "rng": rng.bit_generator.state, "batches": batches,
                "loss": loss_value, "torch_rng": torch.get_rng_state()})
            saved = time.monotonic()
        if not batches:
            drawn = sorted(rng.choice(len(encoded), group, replace=False), key=lambda i: len(encoded[i][0]))
            batches = [drawn[i:i + training["batch_size"]] for i in range(0, group, training["batch_size"])]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        batch = [encoded[i] for i in batches.pop()]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        weights = torch.zeros((len(batch), width))
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, start) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            weights[row, start : len(ids)] = 1.0
            weights[row, start : start + training["decision_tokens"]] = training["decision_weight"]
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        token_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none")
        target_weights = weights[:, 1:].reshape(-1)  # weight of the token each position predicts
        loss = (token_loss * target_weights).sum() / target_weights.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        elapsed = time.monotonic() - started
        if log and (elapsed - logged >= BUILD_PROGRESS_EVERY_S or step + 1 == training["steps"]):
            logged = elapsed
            eta = elapsed / (step + 1 - first) * (training["steps"] - step - 1)
            log(f"demo model: training step {step + 1}/{training['steps']}, loss {loss_value:.3f}, "
                f"{elapsed:.0f}s so far, ETA {eta:.0f}s")
    model.eval()
    return loss_value


def build_demo_model(out_dir: Path, log=None, variant: str = "demo", checkpoint: Path | None = None) -> dict:
    """Build a demo variant into `out_dir` (tokenizer, safetensors weights, generation config), resuming
    from `checkpoint` when an earlier build left one there."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    architecture, training = variant_recipe(variant)
    torch.manual_seed(training["seed"])
    pairs = training_pairs(training)
    tokenizer = _build_tokenizer([p for p, _, _ in pairs] + [r for _, r, _ in pairs], training["vocab_size"])
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(vocab_size=len(tokenizer), bos_token_id=pad_id, eos_token_id=eos_id,
                         pad_token_id=pad_id, **architecture)
    model = Qwen3ForCausalLM(config)
    final_loss = _train(model, _encode_pairs(tokenizer, pairs, training["max_train_tokens"]), pad_id, log, training,
                        checkpoint)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True,
                     temperature=0.6, top_p=0.95, top_k=50).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {"recipe_version": RECIPE_VERSION, "variant": variant, "architecture": architecture, "training": training,
                "final_loss": round(final_loss, 4), "parameters": sum(p.numel() for p in model.parameters()),
                "files": _file_hashes(out_dir)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _file_hashes(model_dir: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(model_dir.iterdir()) if f.is_file() and f.name != MANIFEST}


def is_built(model_dir: Path, variant: str = "demo") -> bool:
    """Built by this recipe and undamaged: every file (weights, config, tokenizer, template) still has the
    hash recorded when it was built. A truncated, edited or missing file (a bad copy, a full disk) makes
    the model count as not built, so it is rebuilt instead of failing every run."""
    manifest = model_dir / MANIFEST
    if not manifest.exists():
        return False
    try:
        recorded = json.loads(manifest.read_text())
        files = _file_hashes(model_dir)
    except (OSError, ValueError):
        return False
    if recorded.get("recipe_version") != RECIPE_VERSION or recorded.get("variant", "demo") != variant:
        return False
    return bool(files) and recorded.get("files") == files


def ensure_demo_model(model_dir: Path, log=None, variant: str = "demo") -> Path:
    """Return the cached demo model, building it (about a minute on 2 cores) when absent or stale.

    Built in a temporary folder and moved into place, so a killed build never leaves half a model
    and two concurrent builders do not clash. The training state is saved every CHECKPOINT_EVERY_S
    (`checkpoint_path`), so an interrupted or killed build resumes where it stopped, to the same weights.
    """
    if is_built(model_dir, variant):
        return model_dir
    if log:
        log(f"building the {variant} model into {model_dir} (recipe {RECIPE_VERSION})")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=model_dir.parent))
    checkpoint = checkpoint_path(model_dir, variant)
    try:
        build_demo_model(staging, log, variant, checkpoint)
        if model_dir.is_symlink():  # a link to an old build: replaced by the new one, its target left alone
            model_dir.unlink()
        elif model_dir.exists() and not is_built(model_dir, variant):
            shutil.rmtree(model_dir)
        try:
            os.rename(staging, model_dir)
        except OSError:
            if not is_built(model_dir, variant):  # someone else's build won the race only if it is complete
                raise
        checkpoint.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir
