"""Declarative automation for the cross-model assets (public Dagster APIs only).

`model_comparison`, `fig_model_comparison`, `model_pairs` and `comparison_report` (group `comparisons`, one partition per benchmark)
carry `COMPARISON_CONDITION`: Dagster's `AutomationCondition.eager()` without its two missing-data
clauses. Eager's `~any_deps_missing()` would wait forever here, because a benchmark partition of
model_comparison depends on *every* `<benchmark>|<model>` partition of predictions and the
models whose weights are not on this machine stay missing; its `newly_missing()` would request a
comparison of a benchmark that no model partition has reached yet (the asset raises). What is left:

    any dependency partition updated (or requested this tick) since this partition was last handled
    AND no dependency partition is queued or running AND this partition is not in progress

so after a weekly tick (schedules.py) that launched one run per model partition, model_comparison of
the benchmark runs once, when the last of those runs has ended, and its figure in the same run. A
single experiment run launched by hand is followed the same way.

Conditions are only evaluated by an automation condition sensor running in the daemon. The sensor
Dagster adds on its own (`default_automation_condition_sensor`) is *stopped* until someone turns it
on in the UI, so `comparisons_automation_sensor` below targets the `comparisons` group and starts
running by itself; it must be listed in `Definitions(sensors=...)`.
"""

from dagster import AssetSelection, AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus


def comparison_condition() -> AutomationCondition:
    """Run when a model partition upstream has updated and none is in progress (see module doc)."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("after_model_partitions")


COMPARISON_CONDITION = comparison_condition()

comparisons_automation_sensor = AutomationConditionSensorDefinition(
    "comparisons_automation_sensor",
    target=AssetSelection.groups("comparisons"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags={"deepconf/trigger": "comparisons_automation_sensor"},
    description="Evaluates the automation condition of the comparisons group (model_comparison, its figure, model_pairs, comparison_report): they run after "
                "model partitions of their benchmark have updated and none is still queued or running.",
)

SENSORS = [comparisons_automation_sensor]
