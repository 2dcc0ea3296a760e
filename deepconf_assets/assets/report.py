"""The `report` asset: one self-contained HTML page per `benchmark|model` with every figure and the
numbers behind the headline, under storage/assets/report/<benchmark>/<model>.html."""

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext, AssetKey, AssetRecordsFilter, MaterializeResult, MetadataValue, asset,
)

from deepconf_assets import metadata
from deepconf_assets.assets.figures import FIGURES
from deepconf_assets.asset_defaults import EXPERIMENT
from deepconf_assets.assets.analysis_inputs import require_headline, resolved_settings
from deepconf_assets.core import analysis, stopping
from deepconf_assets.core.analysis import AnalysisSettings
from deepconf_assets.core.metrics import CATEGORIES
from deepconf_assets.core.answer import hypothesis_summary, pareto_sentences, savings_sentence, summary_markdown
from deepconf_assets.core.interpret import fmt, headline_intervals, hypothesis_sentence, interpretation, truncation_caution
from deepconf_assets.core import html_report
from deepconf_assets.core.formats import fmt_pct
from deepconf_assets.core.examples import SELECTION_RULE, category_examples
from resources.analysis_settings import AnalysisSettingsResource


EXAMPLES_PER_CATEGORY, EXAMPLE_CHARS = 3, 200  # the error-analysis section: prompts per category, characters shown


def _headline(settings: AnalysisSettings, summary: pd.DataFrame, hypothesis: pd.DataFrame,
              intervals: pd.DataFrame) -> str:
    r = require_headline(settings, summary)
    verdict = require_headline(settings, hypothesis)["verdict"]
    ci = {row.metric: f"{fmt_pct(row.value)} (95% CI {fmt_pct(row.ci_low)}–{fmt_pct(row.ci_high)}, n={row.n:,})"
          for row in intervals.itertuples()}
    savings = (f"{fmt(r['token_savings_pct'], 1)}% tokens saved against every trace in full"
               if pd.notna(r["token_savings_pct"]) else "token savings not measured (generated live: no full run to "
                                                       "compare with)")
    return (f"{settings.headline.display} ({settings.headline_labeler} labels, n={int(r['n']):,} prompts): accuracy "
            f"{ci['accuracy']}, sensitivity {ci['sensitivity']}, specificity {ci['specificity']}; "
            f"{fmt(r['avg_traces'], 2)} traces per prompt, {savings}; "
            f"'uncertain compliance is riskier': {verdict}.")


def _traces_record(context: AssetExecutionContext) -> tuple[str, dict]:
    """The run id and metadata of this partition's latest traces materialization ("—" and {} when none)."""
    traces = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("traces"), asset_partitions=[context.partition_key]), limit=1).records
    if not traces:
        return "—", {}
    return traces[0].run_id, {name: entry.value for name, entry in traces[0].asset_materialization.metadata.items()}


def _provenance(context: AssetExecutionContext, settings: AnalysisSettings,
                predictions: pd.DataFrame, traces_run: str, meta: dict) -> pd.DataFrame:
    """Where the numbers come from: this run, the code, the traces' own materialization."""
    prompts = predictions.drop_duplicates("instance_id")

    def value(name, default="—"):
        return meta.get(name, default)

    rows = [
        ("report run", context.run_id),
        ("generated at (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("code version", code_version()),
        ("partition", context.partition_key),
        ("traces run", traces_run),
        ("generation", json.dumps(value("generation_settings", {}), sort_keys=True)),
        ("generation mode", value("generation_mode", "full")),
        ("engine", value("backend")),
        ("model weights", json.dumps(value("weights", {}), sort_keys=True)),
        ("chat template", f"sha256 {value('chat_template_sha256')}; default system prompt: "
                          f"{value('chat_template_default_system_prompt')}; reads enable_thinking: "
                          f"{value('chat_template_reads_enable_thinking')}"),
        ("peak memory of the traces step", f"{value('peak_rss_mb')} MB"),
        ("prompts with traces / in the benchmark", f"{int(prompts['has_traces'].sum()):,} of {len(prompts):,}"),
        ("prompts quarantined", f"{value('prompts_quarantined', 0):,}"),
        ("traces generated / reused from shards", f"{value('traces_generated', 0):,} / "
                                                   f"{value('traces_reused_from_shards', 0):,}"),
        ("analysis settings", json.dumps(settings.recorded(), sort_keys=True)),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _refused_answers(predictions: pd.DataFrame, settings: AnalysisSettings) -> tuple[int, int]:
    """(refused, labelled) traces of the headline labeler: every stored trace (fixed_n=all), or on a live
    partition the traces its policy used."""
    rows = analysis.with_traces(predictions)
    rows = rows[rows["labeler"] == settings.headline_labeler]
    policy = analysis.ALL_TRACES if (rows["policy"] == analysis.ALL_TRACES).any() else settings.headline.display
    rows = rows[(rows["policy"] == policy) & rows["refusal_rate"].notna()]
    refused = float((rows["refusal_rate"] * rows["traces_used"]).sum())
    return int(round(refused)), int(rows["traces_used"].sum())


def code_version() -> str:
    """git commit of the code (with '+local changes' when the tree differs), or 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" + local changes" if dirty else "")


def _pareto(settings: AnalysisSettings, summary: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The headline labeler's policies with accuracy, tokens, Pareto efficiency and stopping sources."""
    labeler = settings.headline_labeler
    rows = summary[summary["labeler"] == labeler][["policy", "accuracy", "avg_traces", "tokens_used",
                                                   "token_savings_pct"]].reset_index(drop=True)
    rows["pareto_efficient"] = analysis.pareto_efficient(rows["tokens_used"], rows["accuracy"])
    sources = analysis.stopping_table(predictions[predictions["labeler"] == labeler], settings)
    return rows.merge(sources.drop(columns="labeler"), on="policy")


def _decided_note(settings: AnalysisSettings) -> str:
    """Whether decided gives fixed_n=all's predictions by construction under these settings."""
    why = settings.identical_to_every_trace().get(stopping.DECIDED)
    return (f"decided gives fixed_n=all's predictions with fewer traces by construction: {why}" if why else
            f"decided may differ from fixed_n=all under vote_rule={settings.vote_rule}")


@asset(
    **EXPERIMENT,
    io_manager_key="html_io_manager",
    kinds={"html"},
    description=(
        "Self-contained HTML report for one benchmark|model: the headline sentence, metrics of every "
        "policy and labeler, the hypothesis test, example prompts per confidence category (misclassified "
        "first), calibration, labeler validation and every figure, "
        "in one file you can open in a browser or send to a colleague."
    ),
)
def report(context: AssetExecutionContext, analysis_settings: AnalysisSettingsResource, predictions: pd.DataFrame,
           hypothesis_test: pd.DataFrame, calibration: pd.DataFrame, labeler_validation: pd.DataFrame,
           labeler_comparison: pd.DataFrame, paradox_check: pd.DataFrame, benchmark_prompts: pd.DataFrame,
           traces: pd.DataFrame, figures: dict[str, bytes]) -> MaterializeResult:
    settings = resolved_settings(analysis_settings)
    missing = [figure.name for figure in FIGURES if figure.name not in figures]
    if missing:
        raise ValueError(f"figures lacks {', '.join(missing)}: re-materialize figures for this partition")
    summary = analysis.summarize_predictions(predictions)
    rows = analysis.with_traces(predictions)
    rows = settings.headline_rows(rows)
    intervals = headline_intervals(rows)
    headline = _headline(settings, summary, hypothesis_test, intervals)
    metrics = summary[["labeler", "policy", *analysis.HEADLINE_METRICS]]
    frontier = _pareto(settings, summary, predictions)
    identical = settings.identical_to_every_trace()
    pareto_brief, pareto_full = pareto_sentences(predictions, settings.headline_labeler, frontier, identical)
    headline += " " + pareto_brief
    warning = settings.consensus_warning(int(predictions["traces_available"].max()))

    def headline_row(table: pd.DataFrame) -> pd.Series | None:
        chosen = settings.headline_rows(table)
        return chosen.iloc[0] if len(chosen) else None

    prompts = predictions.drop_duplicates("instance_id")
    unavailable = dict(zip(labeler_validation.loc[labeler_validation["status"] != "ok", "labeler"],
                           labeler_validation.loc[labeler_validation["status"] != "ok", "status"]))
    hypothesis_row = headline_row(hypothesis_test)
    policies = int((hypothesis_test["labeler"] == settings.headline_labeler).sum())
    reading_of_hypothesis = hypothesis_sentence(hypothesis_row, policies)
    traces_run, traces_meta = _traces_record(context)
    share_longer = traces_meta.get("share_traces_longer_than_window")
    reading = interpretation(
        intervals, hypothesis_row, headline_row(calibration), unavailable, int(prompts["has_traces"].sum()),
        len(prompts), live=bool(pd.isna(require_headline(settings, summary)["token_savings_pct"])),
        window=(traces_meta.get("generation_settings") or {}).get("group_window"),
        share_longer_than_window=share_longer if isinstance(share_longer, float) else None,
        refusals=_refused_answers(predictions, settings),
        categories=rows["category"].value_counts().reindex(CATEGORIES, fill_value=0).to_dict(), policies=policies)
    examples = category_examples(rows, traces, benchmark_prompts, EXAMPLES_PER_CATEGORY, EXAMPLE_CHARS)
    absent = [c for c in CATEGORIES if c not in set(examples["category"])]
    examples_note = (f"Up to {EXAMPLES_PER_CATEGORY} prompts per confidence category ({settings.headline.display}, "
                     f"{settings.headline_labeler} labels), for reading the errors by hand. {SELECTION_RULE} Prompt "
                     f"and response are cut at {EXAMPLE_CHARS} characters." + (f" No prompt fell in: {', '.join(absent)}." if absent else ""))
    caution = truncation_caution(traces["finish_reason"],
                                 (traces_meta.get("generation_settings") or {}).get("max_new_tokens"))
    reading.append(pareto_full)
    if caution:  # mostly cut answers: every number below is qualified, first
        headline, reading = f"{caution} {headline}", [caution, *reading]
    answer = hypothesis_summary(hypothesis_test, settings.headline_labeler)
    savings = savings_sentence(predictions, settings.headline_labeler, settings.headline.display,
                               identical.get(settings.headline.display))
    answer_lines = [*([caution] if caution else []), f"Savings: {savings}",
                    f"Verdict ({settings.headline.display}, {settings.headline_labeler} labels): "
                    f"{reading_of_hypothesis or 'no hypothesis row for the headline policy'}"]
    wide = dict(collapsed=True)
    sections = [
        html_report.Section("What these numbers say", "", None, bullets=reading),
        html_report.Section("Headline with 95% confidence intervals",
                            "Wilson score intervals; positive class = harmful prompt, predicted positive = refusal.",
                            intervals.rename(columns={"value": "rate", "ci_low": "rate_ci_low", "ci_high": "rate_ci_high"})),
        html_report.Section("Provenance", "", _provenance(context, settings, predictions, traces_run, traces_meta),
                            **wide),
        html_report.Section("Metrics per labeler and policy", "Token savings are against generating every trace in full.",
                            metrics, **wide),
        html_report.Section(
            "Stopping policies: accuracy against tokens, and where the savings come from",
            "pareto_efficient (on point estimates; the paired tests behind it are in 'What these numbers say'): "
            "no other policy is at least as accurate with no more tokens (fixed_n=1 and fixed_n=all are the "
            f"references; {_decided_note(settings)}). Savings come from instances stopped right after the "
            "warm-up, stopped before the budget, and later traces cut (deepconf_online; mid-trace = before the "
            "trace's own end)."
            + (f" WARNING: {warning}." if warning else ""), frontier, **wide),
        html_report.Section("Hypothesis: uncertain compliance is less accurate than confident compliance",
                            "Among compliances (categories split at the compliances' own confidence median): two-sided "
                            "Fisher exact test at alpha 0.05 with a bootstrap 95% CI of the accuracy difference, the AUROC "
                            "of confidence for benign against harmful compliances, and a length-adjusted logistic "
                            "regression. Over every decision within harmful and within benign prompts: Breslow-Day "
                            "first; the CMH pooled odds ratio only where the strata agree, per-stratum odds ratios "
                            "otherwise. p values Holm-corrected across policies; `verdict` combines both and "
                            "`verdict_why` says why.", hypothesis_test, **wide),
        html_report.Section("Examples per confidence category", examples_note, examples, **wide),
        html_report.Section("Calibration of instance confidence against correctness",
                            "AUROC and AURC (mean risk over coverage) with bootstrap 95% CIs, also within harmful and "
                            "within benign prompts; ECE and Brier (mean and 5-95% over 20 fold assignments) on the "
                            "out-of-fold isotonic P(correct | confidence).",
                            calibration.drop(columns=["coverage", "risk"]), **wide),
        html_report.Section(
            "The predecessor's quantity against DeepConf confidence",
            "The same policy and labels, with categories drawn from DeepConf confidence (conf_mean) and from the "
            "predecessor's sampled-token NLL (predecessor_nll = -mean_logprob, larger = less likely, not DeepConf): "
            "if the categories swap, a 'confidence paradox' found with the NLL is a sign artifact.",
            paradox_check.drop(columns=["meaning"], errors="ignore"), **wide),
        html_report.Section("Refusal labelers against gold labels", "", labeler_validation, **wide),
        html_report.Section("The labelers side by side on the same traces", "", labeler_comparison, **wide),
        *[html_report.Section(figure.heading, png=figures[figure.name]) for figure in FIGURES],
    ]
    page = html_report.render(f"DeepConf safety report: {context.partition_key}", headline, sections, answer,
                              answer_lines)
    context.log.info(f"report: {len(page) / 1e6:.1f} MB, {len(FIGURES)} figures")
    return MaterializeResult(value=page, metadata={
        "answer": MetadataValue.md(summary_markdown(answer) + "\n\n" + "\n\n".join(answer_lines)),
        "headline": MetadataValue.text(headline),
        "interpretation": MetadataValue.md("\n".join(f"- {sentence}" for sentence in reading)),
        **metadata.numbers({f"{row.metric}{end}": value for row in intervals.itertuples()
                            for end, value in (("", row.value), ("_ci_low", row.ci_low), ("_ci_high", row.ci_high))}),
        "size_bytes": len(page),
        "metrics": metadata.table(metrics),
        **metadata.settings(settings),
    })
