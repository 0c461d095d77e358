"""Fakes for the shadow and watch policy (backends.domain.shadow): the endpoint a policy runs against, and live
traffic that hands out recorded answers and samples. Shared by the shadow-policy and realized-watch tests."""

from __future__ import annotations

from backends.results import Endpoint

ENDPOINT = Endpoint(name="ep", deployment="green", scoring_uri="http://x/score", model_name="m", model_version="2",
                    key_hint="")


class FakeLive:
    """Recorded answers and samples handed out in order; records the calls."""

    def __init__(self, recorded=(), samples=()) -> None:
        self.recorded, self.samples, self.calls = tuple(recorded), list(samples), []

    def start_mirror(self, endpoint, candidate, percent):
        self.calls.append(("start_mirror", candidate, percent))
        return "s1"

    def stop_mirror(self, endpoint):
        self.calls.append(("stop_mirror",))

    def mirrored_answers(self, endpoint, session):
        return self.recorded, 0

    def start_watch(self, endpoint, champion, previous):
        self.calls.append(("start_watch", champion, previous))
        return "w1"

    def watch_sample(self, endpoint, session):
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]

    def stop_watch(self, endpoint):
        self.calls.append(("stop_watch",))
