"""The shadow before a promotion and the watch after it, written once for every backend.

- **shadow**: while the champion answers every client, the candidate deployment gets a copy of live requests
  (the local host mirrors them off the request path; Azure mirrors a share of the endpoint's traffic). Each
  side's answer is recorded with the request's id (``x-request-id``); ``summarize_shadow`` joins them and
  ``shadow_verdict`` says whether the gate may promote. Too few mirrored requests is not a failure: the gate
  decides on the holdout alone and the record says so.
- **watch**: after a promotion the previous champion's deployment stays up at 0 % (warm, so going back is a
  traffic change); ``run_watch`` samples the new champion's live errors and latency and stops at the first
  sample that crosses a limit (``watch_verdict``): live errors, p99, or realized performance on labelled live
  rows significantly below the gate's figure (``backends.domain.realized``). The rollback itself is the rollout policy's promotion with
  event "rollback" (``backends.domain.rollout``), the path `heartflow rollback` takes.

Backends supply primitives (``LiveTraffic``); every decision is a plain function here, tested directly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from backends.domain.realized import WATCH_LABELS_POLL_S, RealizedCheck
from backends.results import Endpoint, HistoryEntry, ShadowFigures, WatchRecord

REQUEST_ID_HEADER = "x-request-id"  # the same header the endpoint's request capture uses (issue 19)

# The gate's limits on the shadow. The candidate is measured against the champion on the same requests at
# the same moment, so the comparison is fair whatever the machine's load.
MAX_CANDIDATE_ERROR_RATE = 0.0  # the champion answered these requests: any failure is one a client would see
MAX_P99_RATIO = 2.0  # candidate p99 may be at most twice the champion's ...
P99_SLACK_MS = 5.0  # ... plus 5 ms: sub-millisecond p99s differ by scheduler noise, not by the model
# Default --max-disagreement (docs/design.md, "Shadow and watch"). Forests that score alike still disagree
# on some rows: on the heart table, out of sample (5 folds), five sweep-like forests (seeds and hyperparameters
# apart, accuracy 0.81-0.83) disagreed on 3.3-5.9 % of rows pairwise. 15 % is between two and three times the
# widest of those, room for live rows being harder than the table's; a candidate beyond it answers the live
# population differently from the model that serves it, and its holdout accuracy can hide that: a disagreement
# of d bounds the accuracy change by d either way, and a 32-row holdout cannot see a drop that size.
DEFAULT_MAX_DISAGREEMENT = 0.15
DEFAULT_MIN_REQUESTS = 50  # fewer mirrored requests than this say too little: the gate reads the holdout alone

# The watch's limits on the new champion.
WATCH_MAX_ERROR_RATE = 0.01  # more than 1 % of its live requests answered with a server error ...
WATCH_MIN_ERRORS = 3  # ... counted from 3 errors on, so one stray error among a few requests is no verdict
WATCH_P99_RATIO = 2.0  # p99 beyond twice the old champion's live p99 (from the shadow) plus the slack
WATCH_MIN_REQUESTS_FOR_P99 = 100
WATCH_POLL_S = 1.0
SETTLE_READS = 20


@dataclass(frozen=True)
class ServedAnswer:
    """One side's answer to one live request, as a backend recorded it."""

    request_id: str
    side: str  # "champion" | "candidate"
    status: int
    ms: float  # scoring time on the host
    predictions: tuple[str, ...] = ()  # the labels answered, one per row (empty on an error)


@dataclass(frozen=True)
class WatchSample:
    """The new champion's live figures since the watch began (summed over the host's workers)."""

    requests: int
    errors: int  # answered with a server error (5xx)
    latencies_ms: tuple[float, ...] = ()
    fallbacks: int = 0  # errors the host answered with the warm previous champion instead (local host only)


@dataclass(frozen=True)
class ShadowVerdict:
    promote_allowed: bool
    reason: str  # why the shadow rejects (empty when it does not)
    note: str = ""  # what the gate should say besides (too few requests: the holdout alone decided)


@dataclass(frozen=True)
class WatchVerdict:
    rollback: bool
    reason: str
    check: str = ""  # "errors", "p99" or "realized": the limit crossed


@runtime_checkable
class LiveTraffic(Protocol):
    """What a backend offers for the shadow and the watch (both backends; the flow checks for it)."""

    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        """Copy ``percent`` % of live requests to deployment ``candidate``; returns the session id."""
        ...

    def stop_mirror(self, endpoint: Endpoint) -> None:
        """Stop mirroring (idempotent)."""
        ...

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        """Both sides' recorded answers of a mirror session, and how many copies were dropped."""
        ...

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        """Record deployment ``champion``'s live answers while ``previous`` stays warm at 0 %; the session id."""
        ...

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        """The figures of a watch session so far."""
        ...

    def stop_watch(self, endpoint: Endpoint) -> None:
        """Stop recording (idempotent)."""
        ...


# ---- figures -------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (``q`` in 0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return float(ordered[min(rank, len(ordered)) - 1])


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval (95 % by default) of a proportion ``hits``/``n``."""
    if n <= 0:
        return None, None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pair_answers(answers: Iterable[ServedAnswer]) -> list[tuple[ServedAnswer, ServedAnswer]]:
    """(champion, candidate) pairs joined by request id, in the order the champion answered; an answer whose
    other side was not recorded (a copy dropped or still in flight when the window closed) is left out."""
    champion: dict[str, ServedAnswer] = {}
    candidate: dict[str, ServedAnswer] = {}
    for answer in answers:
        (champion if answer.side == "champion" else candidate)[answer.request_id] = answer
    return [(c, candidate[rid]) for rid, c in champion.items() if rid in candidate]


def summarize_shadow(
    answers: Iterable[ServedAnswer], seconds: float, min_requests: int, dropped: int = 0
) -> ShadowFigures:
    pairs = pair_answers(answers)
    champion_ok = [(c, k) for c, k in pairs if 200 <= c.status < 300]
    both_ok = [(c, k) for c, k in champion_ok if 200 <= k.status < 300]
    rows = differ = 0
    for c, k in both_ok:
        width = max(len(c.predictions), len(k.predictions))
        rows += width
        differ += sum(1 for a, b in zip(c.predictions, k.predictions, strict=False) if a != b)
        differ += width - min(len(c.predictions), len(k.predictions))  # a row one side did not answer differs
    low, high = wilson_interval(differ, rows)
    candidate_ms = [k.ms for _, k in both_ok]
    champion_ms = [c.ms for c, _ in both_ok]
    return ShadowFigures(
        seconds=float(seconds), mirrored=len(pairs), rows=rows, disagreement=(differ / rows) if rows else None,
        disagreement_low=low, disagreement_high=high,
        candidate_errors=sum(1 for _, k in champion_ok if not 200 <= k.status < 300),
        champion_errors=len(pairs) - len(champion_ok),
        candidate_p50_ms=_rounded(percentile(candidate_ms, 50)), candidate_p99_ms=_rounded(percentile(candidate_ms, 99)),
        champion_p50_ms=_rounded(percentile(champion_ms, 50)), champion_p99_ms=_rounded(percentile(champion_ms, 99)),
        min_requests=min_requests, dropped=dropped,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- decisions ------------------------------------------------------------------------------------------------
def shadow_verdict(figures: ShadowFigures | None, max_disagreement: float = DEFAULT_MAX_DISAGREEMENT) -> ShadowVerdict:
    """May the gate promote, as far as live traffic shows? Errors first (a client would see them), then the
    p99 latency ratio, then disagreement. Too few mirrored requests: allowed, with a note that says so."""
    if figures is None:
        return ShadowVerdict(True, "")
    if not figures.enough:
        return ShadowVerdict(True, "", (
            f"shadow: only {figures.mirrored} mirrored request(s) in {figures.seconds:.0f} s, fewer than the "
            f"{figures.min_requests} it needs; the gate decided on the holdout alone"))
    answered = figures.mirrored - figures.champion_errors
    if answered and figures.candidate_errors / answered > MAX_CANDIDATE_ERROR_RATE:
        return ShadowVerdict(False, (
            f"shadow: the candidate failed {figures.candidate_errors} of {answered} mirrored live requests the "
            f"champion answered ({100 * figures.candidate_errors / answered:.1f} %)"))
    cand, champ = figures.candidate_p99_ms, figures.champion_p99_ms
    if cand is not None and champ is not None and cand > MAX_P99_RATIO * champ + P99_SLACK_MS:
        return ShadowVerdict(False, (
            f"shadow: candidate p99 {cand:.1f} ms > {MAX_P99_RATIO:g} x champion p99 {champ:.1f} ms + "
            f"{P99_SLACK_MS:g} ms on {figures.mirrored} mirrored requests"))
    if figures.disagreement is not None and figures.disagreement > max_disagreement:
        return ShadowVerdict(False, (
            f"shadow: the candidate disagrees with the champion on {100 * figures.disagreement:.1f} % of "
            f"{figures.rows} live rows (95 % interval {100 * (figures.disagreement_low or 0):.1f}-"
            f"{100 * (figures.disagreement_high or 0):.1f} %), more than max_disagreement "
            f"{100 * max_disagreement:.1f} %"))
    return ShadowVerdict(True, "")


def watch_verdict(sample: WatchSample, reference_p99_ms: float | None, realized: RealizedCheck | None = None) -> WatchVerdict:
    """Roll back when the new champion's server errors pass WATCH_MAX_ERROR_RATE (from WATCH_MIN_ERRORS on), or
    its p99 passes WATCH_P99_RATIO x the old champion's live p99 (``reference_p99_ms``, from the shadow) plus
    the slack, once WATCH_MIN_REQUESTS_FOR_P99 requests were seen, or its realized performance on labelled live
    rows is significantly below the gate's figure (``backends.domain.realized``)."""
    if sample.errors >= WATCH_MIN_ERRORS and sample.errors / max(sample.requests, 1) > WATCH_MAX_ERROR_RATE:
        return WatchVerdict(True, (
            f"watch: the new champion answered {sample.errors} of {sample.requests} live requests with a server "
            f"error ({100 * sample.errors / max(sample.requests, 1):.1f} % > {100 * WATCH_MAX_ERROR_RATE:g} %)"), "errors")
    p99 = percentile(sample.latencies_ms, 99)
    if (reference_p99_ms is not None and p99 is not None and len(sample.latencies_ms) >= WATCH_MIN_REQUESTS_FOR_P99
            and p99 > WATCH_P99_RATIO * reference_p99_ms + P99_SLACK_MS):
        return WatchVerdict(True, (
            f"watch: the new champion's p99 {p99:.1f} ms > {WATCH_P99_RATIO:g} x the previous champion's "
            f"{reference_p99_ms:.1f} ms + {P99_SLACK_MS:g} ms over {sample.requests} live requests"), "p99")
    if realized is not None and realized.below:
        return WatchVerdict(True, realized.reason, "realized")
    return WatchVerdict(False, "")


def watch_record(outcome: str, seconds: float, sample: WatchSample | None, reason: str = "",
                 realized: RealizedCheck | None = None, check: str = "") -> WatchRecord:
    figures: dict[str, Any] = {}
    if sample is not None:
        figures = dict(requests=sample.requests, errors=sample.errors, p99_ms=_rounded(percentile(sample.latencies_ms, 99)))
    if realized is not None:
        figures.update(realized_metric=realized.metric, realized_value=realized.value, realized_labelled=realized.labelled,
                       realized_p_value=realized.p_value, gate_value=realized.gate_value)
    return WatchRecord(outcome=outcome, seconds=float(seconds), reason=reason, check=check, **figures)


# ---- the two stages over a backend's primitives --------------------------------------------------------------
def run_shadow(
    live: LiveTraffic, endpoint: Endpoint, candidate: str, seconds: float, min_requests: int, percent: int = 100,
    *, sleep: Callable[[float], None] = time.sleep, settle_s: float = 0.5,
) -> ShadowFigures:
    """Mirror ``percent`` % of live requests to ``candidate`` for ``seconds``, then join and summarise the
    answers. Mirroring always stops, whatever happens in between."""
    session = live.start_mirror(endpoint, candidate, percent)
    try:
        sleep(seconds)
    finally:
        live.stop_mirror(endpoint)
    # The host's workers finish the copies they had queued and write them a moment later: read until the
    # record stops growing (at most SETTLE_READS times).
    answers, dropped = live.mirrored_answers(endpoint, session)
    for _ in range(SETTLE_READS):
        sleep(settle_s)
        again, dropped = live.mirrored_answers(endpoint, session)
        if len(again) == len(answers):
            break
        answers = again
    return summarize_shadow(answers, seconds, min_requests, dropped)


def run_watch(
    live: LiveTraffic, endpoint: Endpoint, session: str, seconds: float, reference_p99_ms: float | None,
    *, poll_s: float = WATCH_POLL_S, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, on_sample: Callable[[float, WatchSample], None] | None = None,
    realized: Callable[[], RealizedCheck | None] | None = None, labels_every_s: float = WATCH_LABELS_POLL_S,
) -> WatchRecord:
    """Watch ``endpoint.deployment`` (the new champion) for ``seconds`` in watch ``session``, started with
    ``live.start_watch`` before the promotion moved traffic (so the warm previous champion answers from the
    first live request on); ``rolled_back`` at the first sample that crosses a limit (the caller rolls back),
    else ``passed``. ``realized``, when the backend reads labelled answers, checks the realized metric every
    ``labels_every_s`` and at the window's end. A passed (or interrupted) watch is stopped here; a rolled back
    one once the caller's rollback moved traffic."""
    started = clock()
    sample = WatchSample(0, 0)
    check: RealizedCheck | None = None
    checked_at: float | None = None
    try:
        while True:
            left = seconds - (clock() - started)
            sleep(max(min(poll_s, left), 0.0))
            sample = live.watch_sample(endpoint, session)
            elapsed = clock() - started
            if on_sample is not None:
                on_sample(elapsed, sample)
            ending = elapsed >= seconds
            if realized is not None and (ending or checked_at is None or elapsed - checked_at >= labels_every_s):
                check, checked_at = realized(), elapsed
            verdict = watch_verdict(sample, reference_p99_ms, check)
            if verdict.rollback:
                # The watch stays on until the rollback has moved traffic: its fallback answers till then.
                return watch_record("rolled_back", seconds, sample, verdict.reason, check, verdict.check)
            if ending:
                break
    except BaseException:
        live.stop_watch(endpoint)
        raise
    live.stop_watch(endpoint)
    reason = f"watch passed: {sample.requests} live request(s), {sample.errors} server error(s) in {seconds:.0f} s"
    if sample.requests == 0:
        reason += " (no live request was seen: nothing to judge)"
    if reference_p99_ms is None:
        reason += " (no p99 limit: no shadow measured the previous champion's live latency)"
    if check is not None:
        reason += f"; {check.reason.removeprefix('watch: ')}"
    return watch_record("passed", seconds, sample, reason, check)


def with_shadow(decision_promote: bool, decision_reason: str, verdict: ShadowVerdict) -> tuple[bool, str]:
    """The gate's (promote, reason) once the shadow is read: a shadow rejection overrides a holdout promotion
    and names its figure; a note (too few requests) is appended to the reason."""
    if decision_promote and not verdict.promote_allowed:
        return False, f"{verdict.reason} (holdout: {decision_reason})"
    if verdict.note:
        return decision_promote, f"{decision_reason}; {verdict.note}"
    return decision_promote, decision_reason


class _Decision(Protocol):
    """What ``gate_with_shadow`` reads of the gate's decision (``backends.domain.selection.GateDecision``, not
    imported: selection imports the spec, which reads the defaults here)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def promote(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...


DecisionT = TypeVar("DecisionT", bound=_Decision)


def gate_with_shadow(decision: DecisionT, figures: ShadowFigures | None, max_disagreement: float) -> DecisionT:
    """The holdout gate's decision once it has read the shadow (``with_shadow``); a fallback to the holdout alone
    is also kept among the decision's warnings."""
    verdict = shadow_verdict(figures, max_disagreement)
    promote, reason = with_shadow(decision.promote, decision.reason, verdict)
    warnings = (*decision.warnings, verdict.note) if verdict.note else decision.warnings
    return dataclasses.replace(decision, promote=promote, reason=reason, warnings=warnings)


def settle_watches(entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """History entries with each promotion's ``watch`` ("watching" when written) replaced by how that watch
    ended: the ``watch-passed`` or watch ``rollback`` entry that follows it, so the promotion itself says."""
    out = list(entries)
    for i, entry in enumerate(out):
        if entry.event != "promoted" or entry.watch is None or entry.watch.outcome != "watching":
            continue
        for later in out[i + 1:]:
            if later.watch is not None and later.watch.outcome in {"passed", "rolled_back"}:
                out[i] = dataclasses.replace(entry, watch=later.watch)
                break
            if later.event in {"promoted", "rollback"}:
                break
    return out
