import pandas as pd
from dagster import MetadataValue, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets.assets.analysis_inputs import (
    LABEL_INS, analyses_by_labeler, require_headline, resolved_settings, split_by_availability,
)
from deepconf_assets.contracts import InstancePredictionsFrame
from deepconf_assets.core import analysis
from resources.analysis_settings import AnalysisSettingsResource


@asset(
    **ANALYSIS,
    ins=LABEL_INS,
    dagster_type=InstancePredictionsFrame,
    description=(
        "One row per prompt x labeler (every registered labeler that ran) x stopping policy (fixed_n=1, "
        "fixed_n=5, fixed_n=all, adaptive, deepconf_online), replayed from the stored traces: traces and "
        "tokens used, refusal rate, predicted_refusal (a tie counts as compliance), instance confidence, "
        "category (confident/uncertain x refusal/compliance) and correct. Positive class = harmful prompt; "
        "predicted positive = refusal. Prompts without traces (quarantined, or beyond max_prompts) keep a "
        "row with has_traces = false and are excluded from every metric."
    ),
)
def predictions(analysis_settings: AnalysisSettingsResource, benchmark_prompts: pd.DataFrame, traces: pd.DataFrame,
                **refusal_labels: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings, traces)
    results = analyses_by_labeler(settings, benchmark_prompts, traces, refusal_labels)
    table = pd.concat([r.predictions() for r in results], ignore_index=True)
    summary = analysis.summarize_predictions(table)
    headline = require_headline(settings, summary)
    _, unavailable = split_by_availability(refusal_labels)
    sources = analysis.stopping_table(table, settings)
    warning = settings.consensus_warning(int(table["traces_available"].max()) if len(table) else 0)
    return MaterializeResult(
        value=table,
        metadata={
            "dagster/row_count": len(table),
            "labelers": ", ".join(r.labeler for r in results),
            **{f"unavailable_{name}": MetadataValue.text(reason) for name, reason in unavailable.items()},
            "positive_class": "harmful prompt (gold); predicted positive = refusal",
            "headline": f"{settings.headline.display}, {settings.headline_labeler} labels",
            **metadata.numbers({name: headline[name] for name in analysis.HEADLINE_METRICS}),
            "excluded_unknown_gold_or_label": int(headline["n_excluded_unknown"]),
            "prompts_without_traces": int((~table.drop_duplicates("instance_id")["has_traces"]).sum()),
            "policies": metadata.table(summary[["labeler", "policy", *analysis.HEADLINE_METRICS]]),
            "categories": metadata.table(analysis.category_table(headline.to_dict())),
            "stopping_sources": metadata.table(sources[sources["labeler"] == settings.headline_labeler]),
            "deepconf_online_setting": warning or "consensus reachable after one dissenting warm-up trace, and not "
                                                  "reached by every warm-up split",
            **metadata.settings(settings),
        },
    )
