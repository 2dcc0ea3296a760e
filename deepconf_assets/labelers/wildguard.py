"""WildGuard (allenai/wildguard, 7B): the official prompt and three-line answer, greedy, through the
`generator` resource like every model; p_refusal from its yes/no log-probs. An answer that does not
parse is parse_error with every label null. Without its weights the labeler is unavailable and says
how to fetch them."""

import pandas as pd

from deepconf_assets.labelers import LabelerContext, LabelerUnavailable, RefusalLabeler
from resources import wildguard_classifier
from resources.model_registry import ModelWeightsNotFound


def label(prompts: list[str], responses: list[str], context: LabelerContext) -> pd.DataFrame:
    try:
        return wildguard_classifier.classify(context.generator, prompts, responses, log=context.log)
    except ModelWeightsNotFound as exc:
        raise LabelerUnavailable(f"WildGuard unavailable: {exc}") from None


LABELER = RefusalLabeler(
    name="wildguard",
    description="WildGuard 7B classifier: refusal, harmful request and harmful response per answer, with "
                "P(refusal) from its yes/no log-probs; parse errors are null labels, never 'no'.",
    label=label,
    extra_columns={c: t for c, t in wildguard_classifier.LABEL_DTYPES.items() if c not in ("refused", "p_refusal")},
    needs_gpu=True,
    model_key="wildguard",
)
