"""The registered labelers side by side on the same traces."""

import pandas as pd
from dagster import MetadataValue, MaterializeResult, asset

from deepconf_assets import metadata
from deepconf_assets.asset_defaults import ANALYSIS
from deepconf_assets.assets.analysis_inputs import LABEL_INS, resolved_settings, split_by_availability
from deepconf_assets.core import analysis
from deepconf_assets.core.agreement import refusal_agreement
from resources.analysis_settings import AnalysisSettingsResource


@asset(
    **ANALYSIS,
    ins={**LABEL_INS},
    description=(
        "Every registered labeler on the same traces: trace-level agreement and Cohen's kappa with the "
        "headline labeler, and every headline metric and the hypothesis verdict of the headline policy "
        "under each labeler (from predictions). A labeler that could not run here says why."
    ),
)
def labeler_comparison(analysis_settings: AnalysisSettingsResource, predictions: pd.DataFrame,
                       **refusal_labels: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    policy, reference = settings.headline.display, settings.headline_labeler
    predictions = predictions[predictions["policy"].isin([policy, analysis.ALL_TRACES])]
    summary = analysis.summarize_predictions(predictions).set_index(["labeler", "policy"])
    verdicts = analysis.hypothesis_tests(predictions).set_index(["labeler", "policy"])["verdict"]
    available, unavailable = split_by_availability(refusal_labels)
    keys = ["instance_id", "trace_idx"]
    rows = []
    for name in sorted({*available, *unavailable}):
        row = {"labeler": name, "status": unavailable.get(name, "ok")}
        if name in available and (name, policy) in summary.index:
            row.update(summary.loc[(name, policy), list(analysis.HEADLINE_METRICS)].to_dict())
            row["hypothesis_verdict"] = verdicts.loc[(name, policy)]
            if reference in available:
                both = available[reference][keys + ["refused"]].merge(available[name][keys + ["refused"]], on=keys)
                agreement = refusal_agreement(both["refused_x"], both["refused_y"])
                row[f"trace_agreement_with_{reference}"] = agreement["agreement"]
                row[f"trace_kappa_with_{reference}"] = agreement["kappa"]
        rows.append(row)
    table = pd.DataFrame(rows)
    return MaterializeResult(value=table, metadata={
        "policy": policy, "reference_labeler": reference,
        **{f"unavailable_{name}": MetadataValue.text(reason) for name, reason in unavailable.items()},
        "comparison": metadata.table(table.assign(status=table["status"].str[:60])),
        **metadata.settings(settings)})
