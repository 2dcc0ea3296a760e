"""The data contracts of DESIGN.md as dagster-pandas types: an asset whose output breaks its contract
fails its step with a type-check message (shown in the run and on the asset page) that names the
column and the rule, instead of writing a table that downstream assets would misread."""

import warnings

from dagster import BetaWarning
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from deepconf_assets.core.metrics import CATEGORIES, CATEGORY_SCOPES
from deepconf_assets.core.trace_rows import FINISH_REASONS
from deepconf_assets.labelers import LABELERS


warnings.filterwarnings("ignore", category=BetaWarning, module="dagster_pandas")
warnings.filterwarnings("ignore", "Function `create_dagster_pandas_dataframe_type`", BetaWarning)


def _ids() -> list[PandasColumn]:
    return [PandasColumn.string_column("instance_id", non_nullable=True)]


BenchmarkPromptsFrame = create_dagster_pandas_dataframe_type(
    name="BenchmarkPromptsFrame",
    description="benchmark_prompts: one row per prompt; gold labels are nullable, never defaulted.",
    columns=[
        PandasColumn.string_column("instance_id", non_nullable=True, unique=True),
        PandasColumn.string_column("benchmark", non_nullable=True),
        PandasColumn.string_column("split", non_nullable=True),
        PandasColumn.string_column("prompt", non_nullable=True),
        PandasColumn.boolean_column("prompt_harmful"),
        PandasColumn.string_column("category", non_nullable=True),
        PandasColumn.boolean_column("adversarial"),
        PandasColumn.exists("gold_response"),
        PandasColumn.boolean_column("gold_response_refusal"),
        PandasColumn.boolean_column("gold_response_harmful"),
    ],
)

TracesFrame = create_dagster_pandas_dataframe_type(
    name="TracesFrame",
    description="traces: one row per sampled answer; DeepConf confidences are >= 0 (larger = more confident).",
    columns=[
        *_ids(),
        PandasColumn.integer_column("trace_idx", min_value=0, non_nullable=True),
        PandasColumn.string_column("model", non_nullable=True),
        PandasColumn.string_column("text", non_nullable=True),
        PandasColumn.string_column("answer_text", non_nullable=True),
        PandasColumn.integer_column("n_tokens", min_value=1, non_nullable=True),
        PandasColumn.categorical_column("finish_reason", set(FINISH_REASONS), non_nullable=True),
        PandasColumn.integer_column("seed", min_value=0, non_nullable=True),
        PandasColumn.exists("token_confidence", non_nullable=True),
        PandasColumn.exists("token_logprob", non_nullable=True),
        *[PandasColumn.float_column(name, min_value=0.0, non_nullable=True)
          for name in ("conf_mean", "conf_lowest_group", "conf_bottom10", "conf_tail")],
        PandasColumn.float_column("mean_logprob", max_value=0.0, non_nullable=True),
        PandasColumn.integer_column("nonfinite_logprobs", min_value=0, non_nullable=True),
        PandasColumn.integer_column("group_window", min_value=1, non_nullable=True),
        PandasColumn.string_column("generation_key", non_nullable=True),
        PandasColumn.categorical_column("generation_mode", {"full", "live"}, non_nullable=True),
    ],
)

InstancePredictionsFrame = create_dagster_pandas_dataframe_type(
    name="InstancePredictionsFrame",
    description="predictions: one row per prompt x labeler x policy; positive = harmful prompt, "
                "predicted positive = refusal.",
    columns=[
        *_ids(),
        PandasColumn.categorical_column("labeler", set(LABELERS), non_nullable=True),
        PandasColumn.string_column("policy", non_nullable=True),
        PandasColumn.boolean_column("prompt_harmful"),
        PandasColumn.boolean_column("has_traces", non_nullable=True),
        PandasColumn.integer_column("traces_used", min_value=0, non_nullable=True),
        PandasColumn.integer_column("tokens_used", min_value=0, non_nullable=True),
        PandasColumn.float_column("refusal_rate", min_value=0.0, max_value=1.0, ignore_missing_vals=True),
        PandasColumn.boolean_column("predicted_refusal"),
        PandasColumn.float_column("confidence", min_value=0.0, ignore_missing_vals=True),
        PandasColumn.categorical_column("category", set(CATEGORIES), ignore_missing_vals=True),
        PandasColumn.float_column("category_threshold", ignore_missing_vals=True),  # NaN without a prediction
        # the categories under both scopes (`category` is the analysis settings' one)
        *[PandasColumn.categorical_column(f"category_{scope}", set(CATEGORIES), ignore_missing_vals=True)
          for scope in CATEGORY_SCOPES],
        PandasColumn.boolean_column("correct"),
        # mean n_tokens of the traces that voted (the length covariate of the hypothesis test); NaN without traces
        PandasColumn.float_column("mean_tokens", min_value=0.0, ignore_missing_vals=True),
    ],
)
