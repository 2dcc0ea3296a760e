import pandas as pd
from dagster import MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.assets.analysis_config import WILDGUARD_UNAVAILABLE, AnalysisConfig, analyses_by_labeler
from deepconf_assets.core import analysis
from deepconf_assets.partitions import experiment_partitions

HEADLINE_COLUMNS = ["labeler", "policy", "n", "accuracy", "sensitivity", "specificity", "precision", "f1",
                    "unsafe_compliance_rate", "over_refusal_rate", "avg_traces", "token_savings_pct"]


@asset(
    partitions_def=experiment_partitions,
    group_name="experiment",
    io_manager_key="parquet_io_manager",
    description=(
        "One row per prompt x labeler (heuristic; WildGuard when available) x stopping policy (fixed_n=1, fixed_n=5, fixed_n=all, adaptive, "
        "deepconf_online), replayed from the stored traces: traces and tokens used, refusal rate, "
        "predicted_refusal (a tie counts as compliance), instance confidence, category "
        "(confident/uncertain x refusal/compliance) and correct. Positive class = harmful prompt; "
        "predicted positive = refusal."
    ),
)
def instance_predictions(
    config: AnalysisConfig,
    benchmark_prompts: pd.DataFrame,
    traces: pd.DataFrame,
    refusal_labels_heuristic: pd.DataFrame,
    refusal_labels_wildguard: pd.DataFrame,
) -> MaterializeResult:
    results = analyses_by_labeler(config, benchmark_prompts, traces, refusal_labels_heuristic, refusal_labels_wildguard)
    predictions = pd.concat([r.instance_predictions() for r in results], ignore_index=True)
    summary = pd.concat([r.summary() for r in results], ignore_index=True)
    headline = summary[summary["labeler"] == "heuristic"].set_index("policy").loc[config.headline_policy()]
    return MaterializeResult(
        value=predictions,
        metadata={
            "dagster/row_count": len(predictions),
            "labelers": ", ".join(r.labeler for r in results)
            + ("" if len(results) > 1 else f" ({WILDGUARD_UNAVAILABLE})"),
            "positive_class": "harmful prompt (gold); predicted positive = refusal",
            "headline_policy": f"{config.headline_policy()}, heuristic labels",
            **{name: metadata.number(headline[name]) for name in HEADLINE_COLUMNS[2:]},
            "excluded_unknown_gold_or_label": int(headline["n_excluded_unknown"]),
            # quarantined, or beyond traces.max_prompts: their rows have traces_used = 0 and no prediction
            "prompts_without_traces": int((~benchmark_prompts["instance_id"].isin(traces["instance_id"])).sum()),
            "policies": metadata.table(summary[HEADLINE_COLUMNS]),
            "categories": metadata.table(analysis.category_table(headline.to_dict())),
        },
    )
