import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from deepconf_assets.asset_defaults import COMPARISONS, EVERY_MODEL_TABLE
from deepconf_assets.assets.analysis_inputs import resolved_settings
from deepconf_assets import metadata
from deepconf_assets.core import analysis, paired, plots
from deepconf_assets.partitions import benchmark_and_model
from resources.analysis_settings import AnalysisSettingsResource
from resources.model_registry import models_by_size

CALIBRATION = ("auroc", "ece_isotonic_oof", "aurc")
CALIBRATION_CIS = ("auroc_ci_low", "auroc_ci_high", "aurc_ci_low", "aurc_ci_high")
COLUMNS = ["model", "labeler", "policy", *analysis.HEADLINE_METRICS, "tp", "fn", "fp", "tn", *CALIBRATION,
           *CALIBRATION_CIS]


@asset(
    **EVERY_MODEL_TABLE,
    description=(
        "Headline metrics of every model partition of one benchmark side by side (whichever model "
        "partitions have been materialized), for the headline policy and for all traces: safety "
        "metrics, token savings, and calibration of instance confidence (AUROC, ECE, AURC)."
    ),
)
def model_comparison(
    context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
    predictions: dict[str, pd.DataFrame],
) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    by_model = {benchmark_and_model(key)[1]: table for key, table in predictions.items()}
    rows = []
    for model in models_by_size(by_model):
        # fixed_n=all is also the token-savings baseline of summarize_predictions
        kept = by_model[model][by_model[model]["policy"].isin([settings.headline.display, analysis.ALL_TRACES])]
        calibration = analysis.calibration_table(kept)[["labeler", "policy", *CALIBRATION, *CALIBRATION_CIS]]
        summary = analysis.summarize_predictions(kept).merge(calibration, on=["labeler", "policy"])
        summary.insert(0, "model", model)
        rows.append(summary)
    if not rows:
        raise ValueError(_no_model_partition(context.partition_key))
    table = pd.concat(rows, ignore_index=True)[COLUMNS]
    return MaterializeResult(
        value=table,
        metadata={"models": ", ".join(table["model"].unique()), "comparison": metadata.table(table),
                  **metadata.settings(settings)},
    )


def _no_model_partition(benchmark: str) -> str:
    return (f"no model partition of benchmark '{benchmark}' has predictions yet; "
            f"materialize the experiment group for '{benchmark}|<model>' first")


@asset(
    **EVERY_MODEL_TABLE,
    description=(
        "Every pair of materialized model partitions of one benchmark compared paired, on the prompts both "
        "answered (headline labeler and policy): the 2x2 counts of right and wrong, each model's accuracy, "
        "the difference A - B with Newcombe's paired 95% CI, McNemar's exact p and Holm's p across the "
        "benchmark's pairs, and a verdict. Models smallest first (A is the smaller)."
    ),
)
def model_pairs(
    context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
    predictions: dict[str, pd.DataFrame],
) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    by_model = {benchmark_and_model(key)[1]: table for key, table in predictions.items()}
    if not by_model:
        raise ValueError(_no_model_partition(context.partition_key))
    correctness = {model: paired.headline_correctness(by_model[model], settings.headline_labeler,
                                                      settings.headline.display)
                   for model in models_by_size(by_model)}
    table = paired.paired_comparison(correctness)
    return MaterializeResult(
        value=table,
        metadata={"models": ", ".join(correctness), "pairs": len(table),
                  "established": int((table["p_holm"] < paired.ALPHA).sum()),
                  "headline": f"{settings.headline.display}, {settings.headline_labeler} labels",
                  "paired comparison": metadata.table(table), **metadata.settings(settings)},
    )


@asset(
    **COMPARISONS,
    io_manager_key="png_io_manager",
    kinds={"matplotlib", "png"},
    description="Safety metrics and confidence calibration against model size for one benchmark "
                "(headline labeler and policy).",
)
def fig_model_comparison(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                            model_comparison: pd.DataFrame) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    rows = settings.headline_rows(model_comparison)  # ordered by model size
    title = (f"{context.partition_key}: models compared ({settings.headline.display}, "
             f"{settings.headline_labeler} labels)")
    png = plots.model_comparison_png(rows, title)
    return MaterializeResult(value=png, metadata={"figure": metadata.image(png, "Model comparison")})


@asset(
    **COMPARISONS,
    io_manager_key="html_io_manager",
    kinds={"html"},
    description="Self-contained HTML report for one benchmark over every materialized model partition: "
                "provenance, per-model headline with Wilson 95% CIs and AUROC CIs, what the numbers say, the "
                "paired comparison of every two models (McNemar exact, Holm across pairs), the comparison "
                "table and figure.",
)
def comparison_report(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource,
                      model_comparison: pd.DataFrame, fig_model_comparison: bytes,
                      model_pairs: pd.DataFrame) -> MaterializeResult:
    from deepconf_assets.assets.report import code_version
    from deepconf_assets.core import html_report
    from deepconf_assets.core.formats import fmt_p
    from deepconf_assets.core.interpret import comparison_sentences, count_intervals

    settings = resolved_settings(analysis_settings)
    rows = settings.headline_rows(model_comparison)
    intervals = count_intervals(rows)
    reading = comparison_sentences(rows, model_pairs)
    shown_pairs = model_pairs.assign(mcnemar_p=model_pairs["mcnemar_p"].map(fmt_p),
                                     p_holm=model_pairs["p_holm"].map(fmt_p))
    provenance = pd.DataFrame([
        ("report run", context.run_id), ("code version", code_version()), ("benchmark", context.partition_key),
        ("models (smallest to largest)", ", ".join(rows["model"])),
        ("headline", f"{settings.headline.display}, {settings.headline_labeler} labels"),
    ], columns=["item", "value"])
    headline = (f"{len(rows)} model partitions of {context.partition_key} ({settings.headline.display}, "
                f"{settings.headline_labeler} labels).")
    page = html_report.render(
        f"DeepConf safety report: {context.partition_key}, models compared", headline,
        [html_report.Section("What these numbers say", bullets=reading),
         html_report.Section(
             "Paired comparison (McNemar exact, Holm across pairs)",
             "Every two models on the prompts both answered: both right, only A right, only B right, both wrong; "
             "accuracy difference A - B with Newcombe's hybrid score 95% CI for paired proportions; McNemar's "
             "exact p from the prompts only one model got right, Holm-corrected across the pairs. Whether two "
             "models differ is read here, never from overlapping per-model intervals.", shown_pairs),
         html_report.Section("Headline per model with 95% confidence intervals",
                             "Wilson score intervals from each model's counts; AUROC with its bootstrap CI. They "
                             "describe each model alone; differences between models are tested above.", intervals),
         html_report.Section("Provenance", "", provenance, collapsed=True),
         html_report.Section("Every policy and labeler", "", model_comparison, collapsed=True),
         html_report.Section("Metrics against model size", png=fig_model_comparison)])
    pair_p = {f"mcnemar_p {pair.model_a} vs {pair.model_b}": metadata.p_value(pair.mcnemar_p)
              for pair in model_pairs.itertuples(index=False)}
    return MaterializeResult(value=page, metadata={
        "headline": MetadataValue.text(headline), "models": ", ".join(rows["model"]), "size_bytes": len(page),
        "reading": MetadataValue.md("\n".join(f"- {sentence}" for sentence in reading)), **pair_p})
