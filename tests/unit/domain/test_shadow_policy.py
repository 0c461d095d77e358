"""The shadow and watch policy (backends.domain.shadow), decided by plain functions on recorded answers."""

from __future__ import annotations

import pytest

from backends.domain import shadow
from backends.domain.shadow import (
    LiveTraffic, ServedAnswer, WatchSample, pair_answers, run_shadow, run_watch, settle_watches, shadow_verdict,
    summarize_shadow, watch_verdict, wilson_interval, with_shadow,
)
from backends.results import HistoryEntry, ShadowFigures, WatchRecord
from tests.unit.domain.shadow_fakes import ENDPOINT, FakeLive


def answers(n: int, *, differ_every: int = 0, fail_every: int = 0, cand_ms: float = 1.0, champ_ms: float = 1.0):
    out = []
    for i in range(n):
        out.append(ServedAnswer(f"r{i}", "champion", 200, champ_ms, ("yes", "no")))
        failed = bool(fail_every) and i % fail_every == 0
        second = "yes" if differ_every and i % differ_every == 0 else "no"
        out.append(ServedAnswer(f"r{i}", "candidate", 500 if failed else 200, cand_ms, () if failed else ("yes", second)))
    return out


def figures(**overrides) -> ShadowFigures:
    base = summarize_shadow(answers(100), 20, 50)
    return ShadowFigures(**{**base.__dict__, **overrides})


def test_answers_are_joined_by_request_id_and_a_lone_side_is_left_out() -> None:
    recorded = [ServedAnswer("b", "candidate", 200, 1, ("1",)), ServedAnswer("a", "champion", 200, 1, ("1",)),
                ServedAnswer("b", "champion", 200, 1, ("0",)), ServedAnswer("c", "candidate", 200, 1, ("1",))]
    pairs = pair_answers(recorded)
    assert [(c.request_id, k.request_id) for c, k in pairs] == [("b", "b")]


def test_figures_count_rows_that_differ_errors_and_latency() -> None:
    got = summarize_shadow(answers(100, differ_every=4, fail_every=10, cand_ms=3.0), 20, 50, dropped=2)
    assert (got.mirrored, got.candidate_errors, got.champion_errors, got.dropped) == (100, 10, 0, 2)
    assert got.rows == 180  # two rows in each of the 90 requests both answered
    differing = sum(1 for i in range(100) if i % 4 == 0 and i % 10 != 0)
    assert got.disagreement == pytest.approx(differing / 180)
    assert got.disagreement_low < got.disagreement < got.disagreement_high
    assert (got.candidate_p99_ms, got.champion_p99_ms) == (3.0, 1.0)
    assert got.enough


def test_a_request_the_champion_failed_is_not_held_against_the_candidate() -> None:
    recorded = [ServedAnswer("a", "champion", 500, 1), ServedAnswer("a", "candidate", 500, 1)]
    got = summarize_shadow(recorded, 1, 1)
    assert (got.candidate_errors, got.champion_errors, got.disagreement) == (0, 1, None)


def test_wilson_interval_is_known_value() -> None:
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 0) == (None, None)


def test_verdict_no_shadow_and_too_few_requests_let_the_holdout_decide_and_say_so() -> None:
    assert shadow_verdict(None).promote_allowed
    few = figures(mirrored=7, min_requests=50, candidate_errors=3)
    verdict = shadow_verdict(few)
    assert verdict.promote_allowed and "only 7 mirrored request(s)" in verdict.note and "holdout alone" in verdict.note


def test_verdict_rejects_on_errors_naming_the_figure() -> None:
    verdict = shadow_verdict(summarize_shadow(answers(100, fail_every=10), 20, 50))
    assert not verdict.promote_allowed and "failed 10 of 100 mirrored live requests" in verdict.reason


def test_verdict_rejects_on_p99_beyond_the_ratio_and_slack() -> None:
    assert shadow_verdict(figures(candidate_p99_ms=6.9, champion_p99_ms=1.0)).promote_allowed  # within 2 x 1 + 5
    verdict = shadow_verdict(figures(candidate_p99_ms=7.5, champion_p99_ms=1.0))
    assert not verdict.promote_allowed and "candidate p99 7.5 ms > 2 x champion p99 1.0 ms" in verdict.reason


def test_verdict_rejects_on_disagreement_above_the_limit() -> None:
    fig = summarize_shadow(answers(100, differ_every=2), 20, 50)  # 50 of 200 rows: 25 %
    assert shadow_verdict(fig, max_disagreement=0.3).promote_allowed
    verdict = shadow_verdict(fig, max_disagreement=0.2)
    assert not verdict.promote_allowed and "25.0 % of 200 live rows" in verdict.reason and "20.0 %" in verdict.reason


def test_the_shadow_overrides_a_holdout_promotion_and_notes_a_fallback() -> None:
    reject = shadow.ShadowVerdict(False, "shadow: bad")
    assert with_shadow(True, "holdout ok", reject) == (False, "shadow: bad (holdout: holdout ok)")
    assert with_shadow(False, "holdout worse", reject) == (False, "holdout worse")
    note = shadow.ShadowVerdict(True, "", "shadow: only 3")
    assert with_shadow(True, "holdout ok", note) == (True, "holdout ok; shadow: only 3")


def test_watch_verdict_error_rate_from_three_errors_and_p99_against_the_reference() -> None:
    assert not watch_verdict(WatchSample(10, 2), None).rollback  # two errors are no verdict yet
    assert watch_verdict(WatchSample(100, 3), None).rollback
    assert not watch_verdict(WatchSample(1000, 3), None).rollback  # 0.3 % is under the 1 % limit
    slow = WatchSample(200, 0, tuple([20.0] * 200))
    assert not watch_verdict(slow, None).rollback  # no reference: no p99 limit
    assert watch_verdict(slow, 5.0).rollback and "p99 20.0 ms" in watch_verdict(slow, 5.0).reason
    assert not watch_verdict(WatchSample(50, 0, tuple([20.0] * 50)), 5.0).rollback  # too few requests for a p99


def test_run_shadow_stops_the_mirror_even_when_interrupted() -> None:
    live = FakeLive(answers(60))
    assert isinstance(live, LiveTraffic)
    got = run_shadow(live, ENDPOINT, "green", 20, 50, sleep=lambda s: None)
    assert got.mirrored == 60 and live.calls == [("start_mirror", "green", 100), ("stop_mirror",)]

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    live = FakeLive()
    with pytest.raises(KeyboardInterrupt):
        run_shadow(live, ENDPOINT, "green", 20, 50, sleep=interrupted)
    assert live.calls[-1] == ("stop_mirror",)


def test_run_watch_rolls_back_at_the_first_bad_sample_and_passes_otherwise() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    live = FakeLive(samples=[WatchSample(10, 0), WatchSample(50, 5)])
    got = run_watch(live, ENDPOINT, "w1", 30, None, clock=lambda: now[0], sleep=sleep)
    assert got.outcome == "rolled_back" and got.errors == 5 and now[0] == 2.0
    assert live.calls == []  # left on for the caller's rollback: its fallback answers until traffic moved

    now[0] = 0.0
    live = FakeLive(samples=[WatchSample(400, 1, (1.0,) * 400)])
    got = run_watch(live, ENDPOINT, "w1", 5, 1.0, clock=lambda: now[0], sleep=sleep)
    assert got.outcome == "passed" and got.requests == 400 and now[0] == 5.0 and "no p99 limit" not in got.reason
    assert live.calls == [("stop_watch",)]


def _entry(event: str, version: str, watch: WatchRecord | None) -> HistoryEntry:
    return HistoryEntry(time="t", event=event, endpoint="ep", deployment="green", model_name="m", model_version=version,
                        accuracy=None, champion_accuracy=None, reason="", triggered_by="x", watch=watch)


def test_a_promotion_reads_with_how_its_watch_ended() -> None:
    watching = WatchRecord("watching", 30)
    rolled = WatchRecord("rolled_back", 30, 50, 5, 1.0, "watch: errors")
    entries = [_entry("promoted", "2", watching), _entry("rollback", "1", rolled), _entry("promoted", "3", watching)]
    settled = settle_watches(entries)
    assert settled[0].watch == rolled and settled[1].watch == rolled
    assert settled[2].watch == watching  # still open: nothing followed it


def test_history_entry_round_trips_shadow_and_watch() -> None:
    import dataclasses
    import json

    entry = dataclasses.replace(_entry("promoted", "2", WatchRecord("passed", 30, 9, 0, 1.5, "ok")),
                                shadow=summarize_shadow(answers(60), 20, 50))
    again = HistoryEntry.from_record(json.loads(json.dumps(dataclasses.asdict(entry))))
    assert again == entry
    old = {k: v for k, v in dataclasses.asdict(entry).items() if k not in {"shadow", "watch"}}
    assert HistoryEntry.from_record(old).shadow is None
