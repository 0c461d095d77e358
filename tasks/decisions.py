"""The decision's second witness (issue 17): the champion's configuration refit on the candidate's folds.

A thin task over ``backends.domain.cv_gate``: it runs on the flow's machine, on the training rows the flow
already holds (one more trial's worth of fits per configuration), before the rollout slot is taken.
"""

from __future__ import annotations

from prefect import get_run_logger, task

from backends.base import ModelVersion, SweepResult
from backends.domain.cv_gate import CvComparison, compare_on_folds, params_of
from backends.domain.dataset import PreparedData
from backends.domain.spec import SweepSpec


@task(name="compare-on-folds", task_run_name="compare-on-folds-v{champion.version}")
def compare_with_champion_on_folds(
    sweep: SweepResult, champion: ModelVersion, prepared: PreparedData, spec: SweepSpec, alpha: float,
) -> CvComparison | None:
    """None when the champion's hyperparameters were not recorded with it (a version registered before
    they were): the gate then decides on the holdout alone, and says so."""
    logger = get_run_logger()
    champion_params = params_of(champion.tags)
    if champion_params is None:
        logger.warning("champion %s v%s records no hyperparameters: no comparison on the training folds",
                       champion.name, champion.version)
        return None
    v = spec.validation
    folds = v.folds if v.method == "kfold" else 5  # a split has one fold: the comparison needs several
    try:
        result = compare_on_folds(prepared.train, prepared.schema, dict(sweep.best.params), champion_params,
                                  metric=spec.metric, seed=spec.seed, folds=folds, random_state=v.random_state,
                                  threshold=spec.threshold, alpha=alpha)
    except (ValueError, TypeError, KeyError) as exc:  # e.g. a parameter today's model code no longer takes
        logger.warning("champion %s v%s's configuration %s could not be refit on today's data (%s: %s): no "
                       "comparison on the training folds", champion.name, champion.version, champion_params,
                       type(exc).__name__, exc)
        return None
    logger.info("candidate against champion %s v%s's configuration on the same folds: %s", champion.name,
                champion.version, result.summary())
    return result
