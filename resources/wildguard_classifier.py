"""The WildGuard classifier (allenai/wildguard, 7B, gated): refusal and harm labels per (prompt, response).

WildGuard is a model registry entry (key "wildguard") and runs through the `generator` resource like
every model, `generator.engine("wildguard")`: the same backend, dtype and vLLM settings, its weights
found by the registry (DEEPCONF_WILDGUARD_DIR, $DEEPCONF_MODEL_DIR/wildguard, the Hugging Face cache),
and loading it closes the generator's engine. What is WildGuard's own lives here: the official
prompt layout and three-line answer (deepconf_assets.core.wildguard_format), greedy decoding up to
128 new tokens, and, beyond the official package, P(refusal) and P(harmful response) read from the
classifier's next-token log-probs of "yes" and "no" at those answer lines (renormalised over the two).
The tokenizer's BOS token starts every input, as in the official package (vLLM adds it there).

A (prompt, response) pair is never scored twice: finished labels are stored as parquet shards under
`<storage>/labels/wildguard/`, keyed by a hash of the weights (registry revision and a fingerprint
of the folder), the engine, the prompt format, the prompt and the response. Gold responses labelled
for one model partition, or a re-materialized partition, are read back without loading the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from deepconf_assets import paths
from deepconf_assets.core import wildguard_format
from resources.generation_types import SamplingSettings
from resources.model_registry import model_spec, resolve_model_dir, weights_fingerprint
from resources.shard_store import ShardStore

MODEL_KEY = "wildguard"
LABEL_DTYPES = {"refused": "boolean", "harmful_request": "boolean", "harmful_response": "boolean",
                "p_refusal": "float64", "p_harmful_response": "float64", "parse_error": "boolean",
                "raw_output": "object"}
LABEL_COLUMNS = list(LABEL_DTYPES)
CACHE_SCHEMA = pa.schema([
    ("label_key", pa.string()),
    ("refused", pa.bool_()), ("harmful_request", pa.bool_()), ("harmful_response", pa.bool_()),
    ("p_refusal", pa.float64()), ("p_harmful_response", pa.float64()), ("parse_error", pa.bool_()),
    ("raw_output", pa.string()),
])
# Bump when the way a pair is classified changes (prompt assembly, decoding, probability read-out):
# every cached label is then computed again.
CACHE_VERSION = 2
GREEDY = SamplingSettings(temperature=0, max_new_tokens=wildguard_format.MAX_NEW_TOKENS, logprobs_k=1)


@dataclass
class ClassificationStats:
    """What one `classify` call did; counts of distinct (prompt, response) pairs except `requested`."""

    requested: int = 0  # rows asked for
    unique: int = 0  # distinct pairs among them
    reused: int = 0  # read from the label cache
    classified: int = 0  # run through the classifier now
    shards_written: int = 0
    seconds: float = 0.0
    backend: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def label_store() -> ShardStore:
    """The label cache, `<storage>/labels/wildguard/` (read at call time, like every storage path)."""
    return ShardStore(paths.storage_dir() / "labels" / MODEL_KEY, CACHE_SCHEMA, ["label_key"], kind="label shard")


def label_keys(fingerprint: str, backend: str, prompts: list[str], responses: list[str]) -> list[str]:
    """One cache key per pair: the weights, the engine, the classification procedure, the pair."""
    procedure = [MODEL_KEY, model_spec(MODEL_KEY).revision, fingerprint, backend, CACHE_VERSION,
                 wildguard_format.PROMPT_TEMPLATE, wildguard_format.MAX_NEW_TOKENS]
    head = hashlib.sha256(json.dumps(procedure).encode()).hexdigest()
    return [hashlib.sha256(json.dumps([head, p, r]).encode()).hexdigest() for p, r in zip(prompts, responses)]


def classify(generator, prompts: list[str], responses: list[str], log: Callable | None = None,
             store: ShardStore | None = None) -> pd.DataFrame:
    """One row per (prompt, response) with LABEL_COLUMNS (LABEL_DTYPES), in input order, index 0..n-1.

    `generator` is the GenerationResource. Raises ModelWeightsNotFound (with how to fetch them)
    when the WildGuard weights are not here, before anything is loaded. Pairs in the label cache
    (`store`, default `label_store()`) are read back; the rest are classified (the model is loaded
    only then) and written to the cache a shard per `generator.batch_sequences` pairs, so a killed
    run keeps what it finished. `table.attrs["stats"]` is a ClassificationStats.
    """
    started = time.monotonic()
    prompts, responses = list(prompts), list(responses)
    folder = resolve_model_dir(MODEL_KEY, log)
    backend = generator.resolved_backend()
    store = store if store is not None else label_store()
    keys = label_keys(weights_fingerprint(MODEL_KEY, folder), backend, prompts, responses)
    first = dict(zip(reversed(keys), reversed(range(len(keys)))))  # key -> its first row
    stats = ClassificationStats(requested=len(keys), unique=len(first), backend=backend)

    found = store.read(set(first)) if first else CACHE_SCHEMA.empty_table().to_pandas()
    stats.reused = len(found)
    done = set(found["label_key"])
    pending = sorted((i for k, i in first.items() if k not in done), key=lambda i: (prompts[i], i))
    if log:
        log(f"WildGuard: {stats.reused} of {stats.unique} distinct (prompt, response) pairs found in the label "
            f"cache {store.folder}; classifying {len(pending)}")
    parts = [found]
    if pending:
        engine = generator.engine(MODEL_KEY, log)
        pending, too_long = fitting(engine, generator.context_limit(MODEL_KEY), prompts, responses, pending)
        if too_long:  # never sent (the engine would refuse or cut them); unlabelled, not cached
            parts.append(pd.DataFrame({"label_key": [keys[i] for i in too_long],
                                       "raw_output": [too_long[i] for i in too_long]}))
            if log:
                log(f"WildGuard: {len(too_long)} pairs not classified, longer than its context: "
                    f"{next(iter(too_long.values()))}")
        size, loaded = generator.batch_sequences, time.monotonic()
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]  # same prompt together: they share the prefix cache
            rows = classify_pairs(engine, [prompts[i] for i in chunk], [responses[i] for i in chunk], size)
            rows.insert(0, "label_key", [keys[i] for i in chunk])
            store.write(rows)
            parts.append(rows)
            stats.shards_written += 1
            stats.classified += len(chunk)
            if log:
                elapsed = time.monotonic() - loaded
                eta = elapsed / stats.classified * (len(pending) - stats.classified)
                log(f"WildGuard: classified {stats.classified}/{len(pending)} pairs "
                    f"({stats.classified / elapsed:.1f}/s, ETA {eta:.0f}s)")
    labels = pd.concat([p.astype(object) for p in parts], ignore_index=True).drop_duplicates("label_key")
    table = labels.set_index("label_key").reindex(keys)[LABEL_COLUMNS].reset_index(drop=True).astype(LABEL_DTYPES)
    stats.seconds = time.monotonic() - started
    table.attrs["stats"] = stats
    return table


def fitting(engine, limit: int, prompts: list[str], responses: list[str], indices: list[int]) -> tuple[list[int], dict]:
    """The pairs of `indices` whose WildGuard input and answer fit in `limit` positions, and for the others
    why not (their labels stay missing, counted by the labeler's unlabelled_traces check)."""
    bos, room = bos_text(engine.tokenizer), limit - GREEDY.max_new_tokens
    fit, too_long = [], {}
    for i in indices:
        n = len(engine.tokenizer(bos + wildguard_format.render(prompts[i], responses[i]), add_special_tokens=False).input_ids)
        if n <= room:
            fit.append(i)
        else:
            too_long[i] = (f"not classified: the WildGuard input is {n} tokens, and with its {GREEDY.max_new_tokens}-token "
                           f"answer that exceeds its context limit of {limit}")
    return fit, too_long


def classify_pairs(engine, prompts: list[str], responses: list[str], batch_sequences: int) -> pd.DataFrame:
    """Run the loaded classifier engine on every pair (no cache): LABEL_COLUMNS, in input order."""
    bos = bos_text(engine.tokenizer)
    texts = [bos + wildguard_format.render(p, r) for p, r in zip(prompts, responses)]
    raw = [""] * len(texts)

    def finished(indices, traces):
        for i, trace in zip(indices, traces):
            raw[i] = trace.text

    engine.run(list(range(len(texts))), texts, [0] * len(texts), GREEDY, batch_sequences, finished)
    labels = [wildguard_format.parse(text) for text in raw]
    p_refusal, p_harmful_response = answer_probabilities(engine, prompts, responses, labels)
    return pd.DataFrame({
        "refused": pd.array([x.refusal for x in labels], dtype="boolean"),
        "harmful_request": pd.array([x.harmful_request for x in labels], dtype="boolean"),
        "harmful_response": pd.array([x.harmful_response for x in labels], dtype="boolean"),
        "p_refusal": p_refusal,
        "p_harmful_response": p_harmful_response,
        "parse_error": pd.array([x.parse_error for x in labels], dtype="boolean"),
        "raw_output": raw,
    })[LABEL_COLUMNS]


def answer_probabilities(engine, prompts: list[str], responses: list[str],
                         labels: list[wildguard_format.WildGuardLabels]) -> tuple[np.ndarray, np.ndarray]:
    """P(yes) at the refusal and harmful-response lines, given the classifier's earlier answers;
    NaN for answers that did not parse."""
    yes, no = answer_token_ids(engine.tokenizer)
    bos = bos_text(engine.tokenizer)
    p = {1: np.full(len(prompts), np.nan), 2: np.full(len(prompts), np.nan)}
    parsed = [i for i, x in enumerate(labels) if not x.parse_error]
    for line in (1, 2):
        texts = [bos + wildguard_format.forced_prefix(prompts[i], responses[i], line,
                                                      (labels[i].harmful_request, labels[i].refusal)) for i in parsed]
        scores = engine.next_token_logprobs(texts, [yes, no]) if texts else np.zeros((0, 2))
        p[line][parsed] = [wildguard_format.p_yes(a, b) for a, b in scores]
    return p[1], p[2]


def bos_text(tokenizer) -> str:
    """The BOS token as text when the tokenizer puts one in front of its input (WildGuard's Mistral
    tokenizer does; the engines tokenize without special tokens), else ""."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token if bos is not None and ids and ids[0] == bos else ""


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """The first token the classifier writes for " yes" and " no" after an answer line's colon."""
    prefix = tokenizer(wildguard_format.ANSWER_LINES[1], add_special_tokens=False)["input_ids"]
    ids = []
    for word in (" yes", " no"):
        full = tokenizer(wildguard_format.ANSWER_LINES[1] + word, add_special_tokens=False)["input_ids"]
        ids.append(full[len(prefix)] if full[: len(prefix)] == prefix else full[-1])
    return ids[0], ids[1]
