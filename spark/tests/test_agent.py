"""The agent's pure logic (and the source's offset arithmetic), without a JVM or a broker."""

import json
import logging
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sparkpilot_agent as A  # noqa: E402

NOW = 1_700_000_100.0


def progress(**over):
    p = {
        "id": "q-1",
        "runId": "r-1",
        "batchId": 7,
        "timestamp": "2023-11-14T22:15:00.000Z",  # 1700000100.0
        "batchDuration": 1500,
        "durationMs": {"triggerExecution": 1500},
        "numInputRows": 3000,
        "inputRowsPerSecond": 2000.0,
        "processedRowsPerSecond": 2000.5,
        "sources": [{
            "description": "sparkpilot_kafka",
            "startOffset": {"0": 100},
            "endOffset": {"0": 3100},
            "latestOffset": {"0": 5100},
            "numInputRows": 3000,
        }],
    }
    p.update(over)
    return p


def record(p=None, **kw):
    args = dict(executors=A.ExecutorStats(live=2, memory_used=50.0, memory_max=200.0, failed_tasks=0),
                target=3, decision_time_s=None, status="no decision", application_id="app-1", now=NOW)
    args.update(kw)
    return A.build_metrics_record(progress() if p is None else p, **args)


def all_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from all_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


class TestMetricsRecord:
    def test_schema_and_values(self):
        r = record()
        assert set(r) == {"timestamp", "input_rate", "processing_rate", "batch_duration_ms", "backlog",
                          "running_executors", "pending_executors", "memory_utilisation", "agent"}
        assert r["timestamp"] == pytest.approx(1_700_000_101.5)  # trigger start + 1.5 s
        assert r["input_rate"] == 2000.0
        assert r["processing_rate"] == 2000.5
        assert r["batch_duration_ms"] == 1500.0
        assert r["backlog"] == 2000.0
        assert r["running_executors"] == 2
        assert r["pending_executors"] == 1
        assert r["memory_utilisation"] == pytest.approx(0.25)
        assert r["agent"] == {"target_executors": 3, "decision_time_s": None, "status": "no decision",
                              "application_id": "app-1", "query_id": "q-1", "batch_id": 7,
                              "failed_tasks": 0}
        # what the Rust side reads: strict JSON, every number finite and >= 0
        text = json.dumps(r, allow_nan=False)
        assert all(math.isfinite(x) and x >= 0 for x in all_numbers(json.loads(text)))

    def test_nan_none_and_missing_inputs_become_zero(self):
        p = progress(inputRowsPerSecond=float("nan"), processedRowsPerSecond=None,
                     batchDuration=float("inf"))
        del p["sources"]
        r = record(p, executors=A.ExecutorStats())
        assert r["input_rate"] == 0.0 and r["processing_rate"] == 0.0
        assert r["batch_duration_ms"] == 0.0 and r["backlog"] == 0.0
        assert "memory_utilisation" not in r  # unknown is left out, not invented
        json.dumps(r, allow_nan=False)

    def test_negative_and_junk_numbers(self):
        r = record(progress(inputRowsPerSecond=-5, processedRowsPerSecond="fast", batchId=None))
        assert r["input_rate"] == 0.0 and r["processing_rate"] == 0.0
        assert r["agent"]["batch_id"] == 0

    def test_timestamp_falls_back_to_now(self):
        assert record(progress(timestamp="yesterday"))["timestamp"] == NOW
        assert record(progress(timestamp=None))["timestamp"] == NOW

    def test_duration_from_trigger_execution_when_batch_duration_missing(self):
        p = progress()
        del p["batchDuration"]
        assert record(p)["timestamp"] == pytest.approx(1_700_000_101.5)

    def test_pending_never_negative(self):
        r = record(executors=A.ExecutorStats(live=5), target=3)
        assert r["pending_executors"] == 0

    def test_decision_time_passed_through(self):
        r = record(decision_time_s=1_700_000_000.25, status="following")
        assert r["agent"]["decision_time_s"] == 1_700_000_000.25
        assert r["agent"]["status"] == "following"


class TestBacklog:
    def test_flat_offsets(self):
        assert A.offsets_backlog({"0": 50, "1": 10}, {"0": 20, "1": 10}) == 30

    def test_offsets_as_json_strings(self):
        assert A.offsets_backlog('{"0": 50}', '{"0": 45}') == 5

    def test_nested_offsets_like_spark_kafka(self):
        latest = {"iot": {"0": 100, "1": 200}, "other": {"0": 5}}
        end = {"iot": {"0": 90, "1": 150}, "other": {"0": 5}}
        assert A.offsets_backlog(latest, end) == 60

    def test_partition_missing_from_end_counts_from_zero(self):
        assert A.offsets_backlog({"0": 10, "1": 7}, {"0": 10}) == 7

    def test_recreated_topic_gives_zero_not_negative(self):
        assert A.offsets_backlog({"0": 3}, {"0": 900}) == 0

    def test_garbage(self):
        assert A.offsets_backlog("not json", {"0": 1}) == 0
        assert A.offsets_backlog(None, None) == 0
        assert A.offsets_backlog({"0": True}, {"0": 0}) == 0

    def test_sum_over_sources_and_sources_without_latest(self):
        p = progress(sources=[
            {"endOffset": {"0": 10}, "latestOffset": {"0": 25}},
            {"endOffset": {"0": 10}, "latestOffset": None},  # source that does not report
            {"endOffset": '{"a": {"0": 1}}', "latestOffset": '{"a": {"0": 4}}'},
        ])
        assert A.progress_backlog(p) == 18


def d(t, n=3, dry=False):
    return A.Decision(time_s=t, executors=n, dry_run=dry)


class TestDecisionChoice:
    def test_newest_wins_regardless_of_arrival_order(self):
        chosen, status = A.choose_decision([d(NOW - 5, 2), d(NOW - 1, 7), d(NOW - 3, 4)],
                                           now=NOW, max_age_s=120, followed_time_s=None)
        assert chosen == d(NOW - 1, 7) and status == "following"

    def test_stale_ignored(self):
        chosen, status = A.choose_decision([d(NOW - 121)], now=NOW, max_age_s=120, followed_time_s=None)
        assert chosen is None and status == "stale decision ignored"

    def test_exactly_max_age_is_still_followed(self):
        chosen, _ = A.choose_decision([d(NOW - 120)], now=NOW, max_age_s=120, followed_time_s=None)
        assert chosen is not None

    def test_dry_run_ignored_even_when_newest(self):
        chosen, status = A.choose_decision([d(NOW - 2, 5), d(NOW - 1, 9, dry=True)],
                                           now=NOW, max_age_s=120, followed_time_s=None)
        assert chosen is None and status == "dry run ignored"

    def test_not_newer_than_followed_ignored(self):
        chosen, status = A.choose_decision([d(NOW - 10)], now=NOW, max_age_s=120,
                                           followed_time_s=NOW - 5)
        assert chosen is None and status == "older decision ignored"

    def test_nothing_received(self):
        assert A.choose_decision([], now=NOW, max_age_s=120, followed_time_s=None) == (None, "no decision")


class TestClamp:
    @pytest.mark.parametrize("desired,current,expected", [
        (3, 1, 3),      # plain
        (100, 1, 17),   # max step 16 up
        (100, 60, 64),  # upper bound
        (0, 5, 1),      # lower bound
        (1, 40, 24),    # max step 16 down
        (10, 10, 10),
    ])
    def test_bounds_and_step(self, desired, current, expected):
        assert A.clamp_target(desired, current, lo=1, hi=64, max_step=16) == expected

    def test_current_outside_bounds_is_pulled_in(self):
        assert A.clamp_target(1, 0, lo=2, hi=8, max_step=1) == 2


class TestParseDecision:
    def test_valid_bytes(self):
        raw = json.dumps({"time_s": NOW, "dry_run": False, "applied": {"executors": 3},
                          "extra": "ignored"}).encode()
        assert A.parse_decision(raw) == d(NOW, 3)

    def test_dry_run_defaults_to_false(self):
        assert A.parse_decision({"time_s": 1, "applied": {"executors": 2}}).dry_run is False

    @pytest.mark.parametrize("raw,fragment", [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        ({"applied": {"executors": 3}}, "time_s"),
        ({"time_s": "now", "applied": {"executors": 3}}, "time_s"),
        ({"time_s": float("nan"), "applied": {"executors": 3}}, "time_s"),
        ({"time_s": 1.0}, "applied.executors"),
        ({"time_s": 1.0, "applied": {"executors": "3"}}, "applied.executors"),
        ({"time_s": 1.0, "applied": {"executors": -1}}, "non-negative integer"),
        ({"time_s": 1.0, "applied": {"executors": 2.5}}, "non-negative integer"),
        ({"time_s": 1.0, "applied": {"executors": True}}, "applied.executors"),
        ({"time_s": 1.0, "applied": {"executors": 2}, "dry_run": "no"}, "dry_run"),
    ])
    def test_malformed_rejected_with_reason(self, raw, fragment):
        with pytest.raises(ValueError, match=fragment):
            A.parse_decision(raw)


class FakeConsumerMsg:
    def __init__(self, value, offset):
        self._value, self._offset = value, offset

    def value(self):
        return self._value

    def offset(self):
        return self._offset

    def error(self):
        return None


class TestFollowerWithoutSpark:
    """The follower's decision path on an agent whose Spark calls are replaced."""

    def make_agent(self):
        agent = A.Agent.__new__(A.Agent)
        agent.cfg = A.resolve_config({}, {}, {"kafka.brokers": "x:1"})
        agent.actuate = True
        agent.target, agent.decision_time_s, agent.status = 1, None, "no decision"
        agent._decommissioned = set()
        import threading
        agent._lock = threading.Lock()
        agent.applied = []
        agent.set_target = agent.applied.append
        return agent

    def test_malformed_record_is_logged_and_others_followed(self, caplog):
        import time
        agent = self.make_agent()
        msgs = [FakeConsumerMsg(b"garbage", 4),
                FakeConsumerMsg(json.dumps({"time_s": time.time(), "applied": {"executors": 40}}).encode(), 5)]
        decisions = []
        with caplog.at_level(logging.WARNING, logger="sparkpilot.agent"):
            for m in msgs:
                try:
                    decisions.append(A.parse_decision(m.value()))
                except ValueError as e:
                    A.log.warning("sparkpilot: decision at offset %s rejected: %s", m.offset(), e)
            agent._follow(decisions)
        assert "offset 4 rejected: not JSON" in caplog.text
        assert agent.applied == [17]  # 1 + maxStep 16
        assert agent.target == 17 and agent.status == "following (clamped)"

    def test_stale_leaves_target(self):
        agent = self.make_agent()
        agent._follow([d(1.0, 5)])
        assert agent.applied == [] and agent.target == 1
        assert agent.status == "stale decision ignored"


class TestConfig:
    def test_precedence(self):
        conf = {"spark.sparkpilot.maxStep": "4", "spark.sparkpilot.minExecutors": "2"}
        env = {"SPARKPILOT_MAX_STEP": "9", "SPARKPILOT_DECISION_MAX_AGE_S": "30",
               "KAFKA_BROKERS": "b:9092"}
        cfg = A.resolve_config(conf, env, {"minExecutors": 3})
        assert cfg["maxStep"] == 4            # Spark conf over env
        assert cfg["minExecutors"] == 3       # override over Spark conf
        assert cfg["decisionMaxAgeS"] == 30.0  # env over default
        assert cfg["kafka.brokers"] == "b:9092"
        assert cfg["metricsTopic"] == "spark-metrics"
        assert cfg["decisionsTopic"] == "scaling-decisions"
        assert cfg["maxExecutors"] == 64

    def test_rejects_bad_settings(self):
        with pytest.raises(ValueError):
            A.resolve_config({}, {}, {"minExecutors": 5, "maxExecutors": 2})
        with pytest.raises(ValueError):
            A.resolve_config({}, {}, {"maxStpe": 2})
        with pytest.raises(ValueError):
            A.resolve_config({}, {}, {"scaleDownMode": "shoot"})


def test_victims_idle_and_newest_first():
    assert A.pick_victims([("1", 0), ("2", 1), ("3", 0), ("4", 2)], 2) == ["3", "1"]
    assert A.pick_victims([("1", 0)], 0) == []
    assert A.pick_victims([("1", 0)], -2) == []


class TestSourceOffsets:
    """kafka_source's offset arithmetic (pure; importing it needs pyspark but no JVM)."""

    ks = pytest.importorskip("kafka_source")

    def test_split_range(self):
        assert self.ks.split_range(0, 10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
        assert self.ks.split_range(5, 7, 4) == [(5, 6), (6, 7)]
        assert self.ks.split_range(5, 5, 4) == []

    def test_cap_shares_budget(self):
        assert self.ks.cap_offsets({"0": 0, "1": 0}, {"0": 100, "1": 3}, 10) == {"0": 7, "1": 3}
        assert self.ks.cap_offsets({"0": 0}, {"0": 100}, None) == {"0": 100}

    def test_recreated_partition_restarts_at_zero(self):
        assert self.ks.cap_offsets({"0": 500}, {"0": 20}, 10) == {"0": 10}
