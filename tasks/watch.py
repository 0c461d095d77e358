"""Before a scheduled retrain trains anything: what was read, what serves, is the data new, has it
drifted from the champion's, and how does the serving champion score on it (decay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pandas as pd
from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field
from prefect.tasks import TaskRunNameCallbackWithParameters
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from backends.reporting import plots
from backends.base import Backend, DataAssetResolver, Endpoint, EvalReport, ModelVersion
from backends.domain import drift as drift_rules
from backends.domain.drift import DriftReport
from backends.domain.lineage import TAG_DATA_URI, TAG_SPLIT
from backends.domain.split import split_agrees
from backends.domain.sources import DataSource, LoadedData, load_spec_data, read_stored_table
from backends.errors import DeploymentError, EvaluationError, HeartflowError
from backends.client.evaluation import evaluate_with
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec
from tasks.naming import validate_task_run_name



@dataclass(frozen=True)
class ChampionWatch:
    """What the run found before training: the champion, what serves, decay and drift."""

    champion: ModelVersion | None
    serving: Endpoint | None
    unchanged: bool
    situation: str  # one sentence that tells "no champion" from "nothing serving"
    decay: EvalReport | None = None
    decay_series: tuple[float, ...] = ()
    drift: DriftReport | None = None

    @property
    def champion_serves(self) -> bool:
        return (self.champion is not None and self.serving is not None
                and self.serving.model_version == self.champion.version)


def describe_situation(champion: ModelVersion | None, serving: Endpoint | None, endpoint_name: str) -> str:
    if champion is None and serving is None:
        return f"no champion yet, and nothing serves on {endpoint_name}"
    if champion is None:
        assert serving is not None
        return f"no champion in the registry; {endpoint_name} serves {serving.model_name} v{serving.model_version}"
    if serving is None:
        return (f"champion {champion.name} v{champion.version} exists but nothing serves on {endpoint_name}: "
                "the run restores it")
    if serving.model_version != champion.version:
        return f"{endpoint_name} serves v{serving.model_version}, not champion v{champion.version}"
    return f"champion {champion.name} v{champion.version} serves on {endpoint_name}"


def unchanged_message(champion: ModelVersion, sha256: str) -> str:
    return f"no new data since {champion.name} v{champion.version} (sha256 {sha256[:12]})"


def early_end_reason(watch: ChampionWatch, data: DataSpec, train_sha256: str) -> str | None:
    """Why the run may end before training, or None: the data is the champion's, or (retrain_on drift)
    no column drifted. ``force`` and a missing champion always train."""
    champion = watch.champion
    if champion is None or data.force:
        return None
    if watch.unchanged:
        return unchanged_message(champion, train_sha256)
    if data.retrain_on == "drift" and watch.drift is not None and not watch.drift.drifted:
        largest = max((c.psi for c in watch.drift.columns), default=0.0)
        return f"no column drifted since {champion.name} v{champion.version} (retrain_on drift; largest PSI {largest:.3f})"
    return None


class CheckedData(BaseModel):
    """Rows the caller (the CLI) already fetched and validated for ``spec``: the flow publishes them as read
    and does not read the source again. Prefect stores a flow run's parameters as JSON: this one's JSON is
    where the rows came from and their hashes, never the rows."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    spec: DataSpec
    uri: str
    sha256: str
    train_sha256: str
    loaded: LoadedData = Field(exclude=True)

    @classmethod
    def of(cls, spec: DataSpec, loaded: LoadedData) -> CheckedData:
        return cls(spec=spec, uri=loaded.source.uri, sha256=loaded.source.sha256,
                   train_sha256=loaded.prepared.train_sha256, loaded=loaded)


# Prefect's protocol for a name callback that takes the parameters also demands a classmethod no plain function
# has; Prefect itself tells such callbacks by their "parameters" argument, which this one has.
@task(name="validate-data", task_run_name=cast(TaskRunNameCallbackWithParameters, validate_task_run_name))
def validate_data(spec: DataSpec, backend: Backend | None = None, model_name: str | None = None,
                  checked: CheckedData | None = None) -> LoadedData:
    """Fetch the source, check the table, set the holdout aside; publish what was read (``data-source``).
    With ``model_name``, the holdout keys hash the columns its champion's split recorded (a column added to
    the table moves no row). ``checked``: the rows the caller already read for this spec, published without
    reading the source again when their split keys agree with the champion's. Never retried: a bad file
    stays bad."""
    logger = get_run_logger()
    if checked is not None and checked.spec != spec:
        raise ValueError(f"the data handed to the flow was read for {checked.spec}, not for the spec's {spec}")
    champion = backend.champion(model_name) if backend is not None and model_name else None
    champion_split = champion.tags.get(TAG_SPLIT) if champion else None
    if checked is not None and split_agrees(checked.loaded.prepared.split, champion_split):
        loaded = checked.loaded
    else:
        if checked is not None:
            logger.info("the champion's holdout is keyed by other columns than the rows the CLI read: read again "
                        "with its keys (%s)", champion_split)
        resolver = backend.resolve_data_asset if isinstance(backend, DataAssetResolver) else None
        loaded = load_spec_data(spec, asset_resolver=resolver, champion_split=champion_split)
    prepared, source = loaded.prepared, loaded.source
    if prepared.inferred:
        logger.info("no schema given: inferred from the table and recorded with the model: %s", prepared.schema.to_json())
    if prepared.missing_cells:
        logger.info("missing cells the model's pipeline imputes, per column: %s", prepared.missing_cells)
    missing = "\n".join(f"| {column} | {count} |" for column, count in prepared.missing_cells.items()) or "| (none) | 0 |"
    create_markdown_artifact(
        key="data-schema", description="The dataset schema used and the missing cells imputed inside the model",
        markdown=f"**schema** ({'inferred' if prepared.inferred else 'given'}): `{prepared.schema.to_json()}`\n\n"
                 f"| column | imputed cells |\n|---|---:|\n{missing}\n",
    )
    logger.info(
        "data %s (%s, version %s, sha256 %s): %d rows valid; %d for training (sha256 %s), %d held out (never uploaded)",
        source.uri, source.resolved, source.version or "unknown", source.sha256[:12], source.rows, len(prepared.train),
        prepared.train_sha256[:12], len(prepared.holdout),
    )
    create_markdown_artifact(
        "\n".join(["# Data read by this run", "", "| field | value |", "|---|---|", f"| URI | `{source.uri}` |",
                   f"| resolved to | `{source.resolved}` |", f"| version | {source.version or 'unknown'} |",
                   f"| sha256 of the bytes read | `{source.sha256}` |", f"| rows | {source.rows} |",
                   f"| training split sha256 | `{prepared.train_sha256}` ({len(prepared.train)} rows) |",
                   *_parts_table(source)]),
        key="data-source", description=f"What was read: {source.uri}",
    )
    return loaded


def _parts_table(source: DataSource) -> list[str]:
    """The files or blobs a folder source appended, one row each (none for a single file)."""
    if not source.parts:
        return []
    rows = [f"| `{p.name}` | {p.version} | {p.size} | `{p.sha256}` |" for p in source.parts]
    return ["", f"{len(source.parts)} file(s) read, in this order:", "", "| file | version | bytes | sha256 |",
            "|---|---|---:|---|", *rows]


@task(name="watch-champion", task_run_name="watch-champion-{spec.model_name}")
def watch_champion(backend: Backend, spec: PipelineSpec, loaded: LoadedData) -> ChampionWatch:
    """Find the champion and what serves; unless the data is the champion's, measure drift against its
    training data and score it through the endpoint on the rows it has not trained on (decay)."""
    logger = get_run_logger()
    prepared = loaded.prepared
    endpoint_name = spec.deploy.endpoint_name
    champion = backend.champion(spec.model_name)
    serving = backend.serving(endpoint_name)
    situation = describe_situation(champion, serving, endpoint_name)
    logger.info("%s", situation)
    unchanged = champion is not None and champion.data_sha256 == prepared.train_sha256
    watch = ChampionWatch(champion, serving, unchanged, situation)
    if champion is None or unchanged:
        return watch

    frame = pd.concat([prepared.train, prepared.holdout], ignore_index=True)
    reference = None
    uri = champion.tags.get(TAG_DATA_URI)
    try:
        reference = read_stored_table(uri, schema=prepared.schema) if uri else None
    except HeartflowError as exc:
        logger.warning("drift not measured: the champion's training data %s cannot be read (%s)", uri, exc)
    if reference is None and not uri:
        logger.warning("drift not measured: champion v%s has no %s tag", champion.version, TAG_DATA_URI)
    drift = None
    if reference is not None:
        schema = prepared.schema
        drift = drift_rules.compare(reference, frame, [*schema.numeric, *schema.passthrough], list(schema.categorical))
        logger.info("drift against v%s's training data: %s", champion.version, ", ".join(drift.drifted) or "no column drifted")

    decay: EvalReport | None = None
    series: tuple[float, ...] = ()
    if watch.champion_serves:
        assert serving is not None
        unseen = drift_rules.unseen_rows(frame, reference)
        rows = drift_rules.decay_sample(unseen, seed=spec.sweep.seed)
        if len(rows) < len(unseen):
            logger.info("decay measured on a seeded sample of %d of the %d new rows", len(rows), len(unseen))
        if rows.empty:
            logger.info("decay not measured: every row of the new data was in v%s's training data", champion.version)
        else:
            try:
                predictor = backend.predictor(serving, deployment=serving.deployment, batch_size=32, purpose="decay")
                decay = evaluate_with(predictor, serving, rows, prepared.schema.target, deployment=serving.deployment)
            except (EvaluationError, DeploymentError) as exc:  # the gate will meet it too; training still helps
                logger.warning("decay not measured: champion v%s did not answer on %s (%s)", champion.version,
                               serving.name, exc)
                return ChampionWatch(champion, serving, unchanged, situation, None, (), drift)
            series = backend.record_champion_score(champion, decay.accuracy, decay.rows)
            logger.info("champion v%s on %d new rows through %s/%s: accuracy %.4f (run %d of its series)",
                        champion.version, decay.rows, serving.name, serving.deployment, decay.accuracy, len(series))
    else:
        logger.info("decay not measured: the champion is not serving (%s)", situation)
    return ChampionWatch(champion, serving, unchanged, situation, decay, series, drift)


@task(name="report-watch", task_run_name="report-watch-{spec.model_name}")
def report_watch(spec: PipelineSpec, watch: ChampionWatch) -> None:  # noqa: ARG001 - names the task run
    """``champion-decay`` (table + markdown with the accuracy over runs) and ``data-drift`` (table +
    markdown summary with the PSI per column) artifacts, pictures inline."""
    champion = watch.champion
    if champion is not None and watch.decay is not None:
        series = watch.decay_series
        create_table_artifact(
            [{"run": i, "accuracy": round(a, 4)} for i, a in enumerate(series, start=1)], key="champion-decay",
            description=(f"Accuracy of champion {champion.name} v{champion.version} on each run's new labelled data, "
                         f"through the endpoint (latest: {watch.decay.accuracy:.4f} on {watch.decay.rows} rows)"),
        )
        figure = plots.decay_figure(series, f"{champion.name} v{champion.version}: accuracy on new data, run after run")
        create_markdown_artifact(
            f"# Champion decay: {champion.name} v{champion.version}\n\n"
            f"Latest: accuracy **{watch.decay.accuracy:.4f}** on {watch.decay.rows} new rows "
            f"(run {len(series)}; first {series[0]:.4f}).\n\n![champion accuracy over runs]({plots.png_data_uri(figure)})",
            key="champion-decay-plot", description="The serving champion's accuracy on new data over runs",
        )
    if watch.drift is not None:
        drift = watch.drift
        create_table_artifact(drift.rows_for_table(), key="data-drift",
                              description=f"Per-column drift: {', '.join(drift.drifted) or 'no column drifted'}")
        figure = plots.drift_figure([(c.column, c.psi, c.drifted) for c in drift.columns],
                                    drift_rules.MAJOR_PSI, drift_rules.MODERATE_PSI)
        create_markdown_artifact(drift.summary_markdown() + f"\n\n![PSI per column]({plots.png_data_uri(figure)})",
                                 key="data-drift-summary", description="Data drift against the champion's training data")


@task(name="restore-champion", task_run_name="restore-{champion.name}-v{champion.version}-to-{spec.endpoint_name}")
def restore_champion(backend: Backend, champion: ModelVersion, spec: DeploySpec) -> Endpoint:
    """Put the champion back in front of an endpoint that serves nothing (the registry is unchanged)."""
    endpoint = backend.deploy(champion, spec)
    get_run_logger().info("nothing served on %s: champion %s v%s restored on deployment %s (traffic %s)",
                          endpoint.name, champion.name, champion.version, endpoint.deployment, dict(endpoint.traffic))
    return endpoint
