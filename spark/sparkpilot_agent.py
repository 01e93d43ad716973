"""sparkpilot agent: closes the autoscaling loop from inside a Spark Structured Streaming driver.

Ship this file next to the job's entry point (``--py-files sparkpilot_agent.py``) and call
``sparkpilot_agent.attach(spark)`` once the session exists. The agent then

* publishes one JSON record per micro-batch (``StreamingQueryListener.onQueryProgress``) to the
  metrics topic (default ``spark-metrics``), keyed by the query id: input and processing rates,
  batch duration, backlog (latest offset the source saw minus the batch's end offset, summed over
  sources), live and pending executors, storage-memory use and the agent's own state;
* follows the newest scaling decision on the decisions topic (default ``scaling-decisions``) and
  sets the application's executor count to it, within ``[minExecutors, maxExecutors]`` and at
  most ``maxStep`` executors away from the current target.

How the executor count is set. Scale-up asks the cluster manager for a new total with
``SparkContext.requestTotalExecutors``. Scale-down first lowers that total, then *decommissions*
the surplus executors (``CoarseGrainedSchedulerBackend.decommissionExecutors``, reached through
py4j; it is ``private[spark]`` in Scala but public in bytecode), idle ones first. With
``spark.decommission.enabled`` and ``spark.storage.decommission.{shuffleBlocks,rddBlocks}.enabled``
a decommissioned executor stops taking tasks, lets its running tasks finish, migrates its shuffle
and cached blocks to the remaining executors and only then exits, so the reduce stages that still
need its map output read the migrated copies instead of failing with FetchFailed. Killing
executors outright (``scaleDownMode=kill``, kept for comparison) loses that output; see
spark/README.md for the measurements behind this choice.

Dynamic allocation must be OFF (``spark.dynamicAllocation.enabled=false``). With it on, Spark's
ExecutorAllocationManager recomputes and re-sends the executor target on every tick, overriding
any target set here, and ``SparkContext.killExecutors`` is refused ("unsupported with Dynamic
Allocation turned on"). If the agent finds dynamic allocation on it still publishes metrics but
does not actuate. On EMR Serverless submit the job with ``spark.dynamicAllocation.enabled=false``;
the application's maximum capacity then bounds what the agent can obtain.

Failure behaviour: every callback and thread catches and logs its own exceptions, so an agent
failure never stops the query. Kafka being away only delays publishing (records are buffered and
re-sent: at-least-once, bounded buffer, drops counted) and leaves the executor target where it
was; both directions resume by themselves when the broker returns.

Configuration: Spark conf ``spark.sparkpilot.<key>`` (or ``attach(spark, <key>=value)``), else the
environment variable ``SPARKPILOT_<KEY in upper snake case>``, else the default below. The broker
list also falls back to ``KAFKA_BROKERS``.

The decision and record logic are plain functions without Spark imports, tested in spark/tests.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

log = logging.getLogger("sparkpilot.agent")

# key -> (default, type)
DEFAULTS: dict[str, tuple[Any, type]] = {
    "kafka.brokers": ("", str),
    "metricsTopic": ("spark-metrics", str),
    "decisionsTopic": ("scaling-decisions", str),
    "groupId": ("", str),  # empty: sparkpilot-agent-<applicationId>
    "minExecutors": (1, int),
    "maxExecutors": (64, int),
    "maxStep": (16, int),
    "decisionMaxAgeS": (120.0, float),
    "initialExecutors": (0, int),  # 0: spark.executor.instances, else minExecutors
    "scaleDownMode": ("decommission", str),  # decommission | kill
    "bufferRecords": (10000, int),
}


# --------------------------------------------------------------------------------------------
# Pure logic (no Spark, no Kafka)
# --------------------------------------------------------------------------------------------


def env_name(key: str) -> str:
    """``maxStep`` -> ``SPARKPILOT_MAX_STEP``, ``kafka.brokers`` -> ``SPARKPILOT_KAFKA_BROKERS``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).replace(".", "_")
    return "SPARKPILOT_" + snake.upper()


def resolve_config(
    conf: Mapping[str, str], env: Mapping[str, str], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge overrides > Spark conf (``spark.sparkpilot.<key>``) > environment > defaults."""
    out: dict[str, Any] = {}
    for key, (default, kind) in DEFAULTS.items():
        raw: Any = default
        if key in overrides:
            raw = overrides[key]
        elif ("spark.sparkpilot." + key) in conf:
            raw = conf["spark.sparkpilot." + key]
        elif env_name(key) in env:
            raw = env[env_name(key)]
        elif key == "kafka.brokers" and "KAFKA_BROKERS" in env:
            raw = env["KAFKA_BROKERS"]
        out[key] = kind(raw)
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sparkpilot settings: {sorted(unknown)}")
    if out["minExecutors"] < 0 or out["maxExecutors"] < out["minExecutors"]:
        raise ValueError("need 0 <= minExecutors <= maxExecutors")
    if out["maxStep"] < 1:
        raise ValueError("maxStep must be at least 1")
    if out["scaleDownMode"] not in ("decommission", "kill"):
        raise ValueError("scaleDownMode must be 'decommission' or 'kill'")
    return out


def finite(value: Any, default: float = 0.0) -> float:
    """A finite, non-negative float; ``default`` for None, NaN, infinities, junk or negatives."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(x) or math.isinf(x) or x < 0:
        return default
    return x


def _as_offset(value: Any) -> Any:
    """Offsets appear in progress JSON as parsed objects or as JSON strings; parse the latter."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def offsets_backlog(latest: Any, end: Any) -> int:
    """Events between ``end`` and ``latest`` offsets, summed over every numeric leaf.

    Works for flat ``{"0": 42}`` offsets and nested ``{"topic": {"0": 42}}`` ones. A partition
    missing from ``end`` counts from 0; negative differences (a re-created topic) count as 0.
    """
    latest, end = _as_offset(latest), _as_offset(end)
    if isinstance(latest, bool):
        return 0
    if isinstance(latest, (int, float)):
        base = end if isinstance(end, (int, float)) and not isinstance(end, bool) else 0
        diff = finite(latest) - finite(base)
        return int(diff) if diff > 0 else 0
    if isinstance(latest, dict):
        end = end if isinstance(end, dict) else {}
        return sum(offsets_backlog(v, end.get(k)) for k, v in latest.items())
    return 0


def progress_backlog(progress: Mapping[str, Any]) -> int:
    """Backlog over all sources of a progress dict: latestOffset - endOffset (0 if unknown)."""
    total = 0
    for source in progress.get("sources") or []:
        if isinstance(source, dict) and source.get("latestOffset") is not None:
            total += offsets_backlog(source.get("latestOffset"), source.get("endOffset"))
    return total


def _parse_iso(ts: Any) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def batch_end_time(progress: Mapping[str, Any], now: float) -> float:
    """Unix seconds at which the batch ended: trigger start + batch duration (``now`` if unknown)."""
    start = _parse_iso(progress.get("timestamp"))
    if start is None:
        return now
    duration_ms = finite(progress.get("batchDuration"))
    if not duration_ms:
        duration_ms = finite((progress.get("durationMs") or {}).get("triggerExecution"))
    return start + duration_ms / 1000.0


@dataclass
class ExecutorStats:
    live: int = 0  # executors alive, driver excluded
    memory_used: float = 0.0
    memory_max: float = 0.0
    failed_tasks: int = 0  # over all executors, removed ones and the driver included


def build_metrics_record(
    progress: Mapping[str, Any],
    *,
    executors: ExecutorStats,
    target: int,
    decision_time_s: float | None,
    status: str,
    application_id: str,
    now: float,
) -> dict[str, Any]:
    """The record published per micro-batch; every number finite and >= 0."""
    record: dict[str, Any] = {
        "timestamp": batch_end_time(progress, now),
        "input_rate": finite(progress.get("inputRowsPerSecond")),
        "processing_rate": finite(progress.get("processedRowsPerSecond")),
        "batch_duration_ms": finite(progress.get("batchDuration")),
        "backlog": float(progress_backlog(progress)),
        "running_executors": int(executors.live),
        "pending_executors": max(int(target) - int(executors.live), 0),
        "agent": {
            "target_executors": int(target),
            "decision_time_s": None if decision_time_s is None else finite(decision_time_s),
            "status": status,
            "application_id": application_id,
            "query_id": str(progress.get("id") or ""),
            "batch_id": int(finite(progress.get("batchId"))),
            "failed_tasks": int(executors.failed_tasks),
        },
    }
    if executors.memory_max > 0:
        record["memory_utilisation"] = finite(executors.memory_used / executors.memory_max)
    return record


@dataclass(frozen=True)
class Decision:
    time_s: float
    executors: int
    dry_run: bool


def parse_decision(raw: Any) -> Decision:
    """Decode one decision record (bytes, str or dict); ValueError says what is wrong."""
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    time_s = raw.get("time_s")
    if isinstance(time_s, bool) or not isinstance(time_s, (int, float)) or not math.isfinite(time_s):
        raise ValueError(f"time_s missing or not a finite number: {time_s!r}")
    applied = raw.get("applied")
    executors = applied.get("executors") if isinstance(applied, dict) else None
    if isinstance(executors, bool) or not isinstance(executors, (int, float)):
        raise ValueError(f"applied.executors missing or not a number: {executors!r}")
    if not math.isfinite(executors) or executors < 0 or executors != int(executors):
        raise ValueError(f"applied.executors not a non-negative integer: {executors!r}")
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValueError(f"dry_run not a boolean: {dry_run!r}")
    return Decision(float(time_s), int(executors), dry_run)


def choose_decision(
    decisions: Iterable[Decision], *, now: float, max_age_s: float, followed_time_s: float | None
) -> tuple[Decision | None, str]:
    """Pick the decision to follow among newly received ones.

    The newest by ``time_s`` wins. Returns ``(decision, "following")``, or ``(None, reason)``
    when that newest one must be ignored (dry run, older than ``max_age_s``, or not newer than
    the decision already followed), or ``(None, "no decision")`` when nothing was received.
    """
    newest = max(decisions, key=lambda d: d.time_s, default=None)
    if newest is None:
        return None, "no decision"
    if followed_time_s is not None and newest.time_s <= followed_time_s:
        return None, "older decision ignored"
    if newest.dry_run:
        return None, "dry run ignored"
    if now - newest.time_s > max_age_s:
        return None, "stale decision ignored"
    return newest, "following"


def clamp_target(desired: int, current: int, *, lo: int, hi: int, max_step: int) -> int:
    """Bound ``desired`` to ``[lo, hi]`` and to at most ``max_step`` away from ``current``."""
    bounded = min(max(int(desired), lo), hi)
    stepped = min(max(bounded, current - max_step), current + max_step)
    return min(max(stepped, lo), hi)


def pick_victims(executors: Iterable[tuple[str, int]], count: int) -> list[str]:
    """Executors to remove: fewest running tasks first, then the newest (highest numeric id)."""

    def order(item: tuple[str, int]) -> tuple[int, int]:
        exec_id, active = item
        return (active, -int(exec_id) if exec_id.isdigit() else 0)

    return [e for e, _ in sorted(executors, key=order)[: max(count, 0)]]


# --------------------------------------------------------------------------------------------
# The agent (Spark driver side)
# --------------------------------------------------------------------------------------------


class _RateLimitedLog:
    """Log a repeating failure at most once per ``every_s`` (with a count of the suppressed)."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s, self.last, self.suppressed = every_s, 0.0, 0

    def __call__(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            extra = f" ({self.suppressed} similar suppressed)" if self.suppressed else ""
            log.warning(msg + extra, *args)
            self.last, self.suppressed = now, 0
        else:
            self.suppressed += 1


class Agent:
    """Publisher + follower for one SparkContext. Create it with :func:`attach`."""

    def __init__(self, spark: Any, cfg: dict[str, Any]) -> None:
        self.spark = spark
        self.sc = spark.sparkContext
        self.cfg = cfg
        self.app_id = self.sc.applicationId
        self.group_id = cfg["groupId"] or f"sparkpilot-agent-{self.app_id}"
        conf = self.sc.getConf()
        self.actuate = conf.get("spark.dynamicAllocation.enabled", "false").lower() != "true"
        initial = cfg["initialExecutors"] or int(conf.get("spark.executor.instances", "0") or 0)
        self.target = clamp_target(
            initial or cfg["minExecutors"], initial or cfg["minExecutors"],
            lo=cfg["minExecutors"], hi=cfg["maxExecutors"], max_step=1 << 30,
        )
        self.decision_time_s: float | None = None
        self.status = "no decision" if self.actuate else "dynamic allocation on: not actuating"
        self.dropped = 0
        self._decommissioned: set[str] = set()
        self._lock = threading.Lock()  # target/status/_decommissioned
        self._progress: queue.Queue = queue.Queue(maxsize=1000)
        self._outbox: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._warn_pub = _RateLimitedLog()
        self._warn_fol = _RateLimitedLog()

    # ---- Spark access (py4j) ----

    def executor_stats(self) -> tuple[ExecutorStats, list[tuple[str, int]]]:
        """Live executors (id, running tasks) and totals, from the driver's status store."""
        jvm = self.sc._jvm
        store = self.sc._jsc.sc().statusStore()
        summaries = jvm.scala.jdk.javaapi.CollectionConverters.asJava(store.executorList(False))
        stats, live = ExecutorStats(), []
        for s in summaries:
            stats.failed_tasks += int(s.failedTasks())
            if s.id() == "driver" or not s.isActive():
                continue
            live.append((s.id(), int(s.activeTasks())))
            stats.memory_used += float(s.memoryUsed())
            stats.memory_max += float(s.maxMemory())
        stats.live = len(live)
        return stats, live

    def set_target(self, n: int) -> None:
        """Make ``n`` the executor count: raise the total, or lower it and retire the surplus."""
        jsc = self.sc._jsc.sc()
        jvm = self.sc._jvm
        empty = jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(jvm.java.util.HashMap())
        if not jsc.requestTotalExecutors(n, 0, empty):
            raise RuntimeError("requestTotalExecutors refused by the scheduler backend")
        _, live = self.executor_stats()
        with self._lock:
            self._decommissioned &= {e for e, _ in live}
            remaining = [(e, a) for e, a in live if e not in self._decommissioned]
        victims = pick_victims(remaining, len(remaining) - n)
        if not victims:
            return
        backend = jsc.schedulerBackend()
        if self.cfg["scaleDownMode"] == "kill":
            # force=false: the backend refuses executors that are running tasks
            seq = jvm.scala.jdk.javaapi.CollectionConverters.asScala(jvm.java.util.ArrayList(victims))
            done = backend.killExecutors(seq.toList(), False, False, False)
        else:
            info_cls = jvm.org.apache.spark.scheduler.ExecutorDecommissionInfo
            arr = self.sc._gateway.new_array(jvm.scala.Tuple2, len(victims))
            for i, e in enumerate(victims):
                info = info_cls(f"sparkpilot: scale down to {n}", jvm.scala.Option.apply(None))
                arr[i] = jvm.scala.Tuple2(e, info)
            # adjustTargetNumExecutors=false: the total was already set above
            done = backend.decommissionExecutors(arr, False, False)
        done_ids = list(jvm.scala.jdk.javaapi.CollectionConverters.asJava(done))
        with self._lock:
            self._decommissioned.update(done_ids)
        log.info("sparkpilot: target %d, %s executors %s", n, self.cfg["scaleDownMode"], done_ids)

    # ---- listener side ----

    def on_progress(self, progress_json: str) -> None:
        """Called from the listener: hand the progress over, never block."""
        try:
            self._progress.put_nowait((progress_json, time.time()))
        except queue.Full:
            self.dropped += 1
            self._warn_pub("sparkpilot: progress queue full, %d records dropped", self.dropped)

    # ---- publisher thread ----

    def _publisher(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({
            "bootstrap.servers": self.cfg["kafka.brokers"],
            "acks": "all",
            "enable.idempotence": False,
            "retries": 1_000_000,
            "retry.backoff.ms": 200,
            "message.timeout.ms": 300_000,
            "linger.ms": 5,
            "queue.buffering.max.messages": self.cfg["bufferRecords"],
            "reconnect.backoff.max.ms": 2000,
            "topic.metadata.refresh.interval.ms": 5000,
            "error_cb": lambda err: self._warn_pub("sparkpilot: kafka producer: %s", err),
        })
        topic = self.cfg["metricsTopic"]

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:  # timed out or refused: back in line, at the front
                self._warn_pub("sparkpilot: metrics record not delivered (%s), re-queued", err)
                self._buffer((msg.key(), msg.value()), front=True)

        while not self._stop.is_set():
            try:
                try:
                    progress_json, received = self._progress.get(timeout=0.05)
                    key, value = self._record(progress_json, received)
                    self._buffer((key, value))
                except queue.Empty:
                    pass
                while self._outbox:
                    key, value = self._outbox[0]
                    try:
                        producer.produce(topic, key=key, value=value, on_delivery=delivered)
                    except BufferError:
                        break  # librdkafka's queue is full: retry after poll
                    self._outbox.popleft()
                producer.poll(0.05)
            except Exception as e:  # noqa: BLE001 - the agent must never die
                self._warn_pub("sparkpilot: publisher error: %r", e)
                time.sleep(0.5)
        producer.flush(5)

    def _record(self, progress_json: str, received: float) -> tuple[bytes, bytes]:
        progress = json.loads(progress_json)
        try:
            stats, _ = self.executor_stats()
        except Exception as e:  # noqa: BLE001
            self._warn_pub("sparkpilot: executor stats unavailable: %r", e)
            stats = ExecutorStats()
        with self._lock:
            target, decided, status = self.target, self.decision_time_s, self.status
        record = build_metrics_record(
            progress, executors=stats, target=target, decision_time_s=decided, status=status,
            application_id=self.app_id, now=received,
        )
        key = str(progress.get("id") or "").encode()
        return key, json.dumps(record, allow_nan=False).encode()

    def _buffer(self, item: tuple[bytes, bytes], front: bool = False) -> None:
        if len(self._outbox) >= self.cfg["bufferRecords"]:
            self._outbox.popleft()  # oldest goes
            self.dropped += 1
            self._warn_pub("sparkpilot: metrics buffer full, %d records dropped", self.dropped)
        if front:
            self._outbox.appendleft(item)
        else:
            self._outbox.append(item)

    # ---- follower thread ----

    def _new_consumer(self) -> Any:
        from confluent_kafka import Consumer

        consumer = Consumer({
            "bootstrap.servers": self.cfg["kafka.brokers"],
            "group.id": self.group_id,
            "auto.offset.reset": "latest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 2000,
            "enable.auto.commit": True,
            "reconnect.backoff.max.ms": 2000,
            "topic.metadata.refresh.interval.ms": 5000,
            "error_cb": lambda err: self._warn_fol("sparkpilot: kafka consumer: %s", err),
        })
        consumer.subscribe([self.cfg["decisionsTopic"]])
        return consumer

    def _follower(self) -> None:
        consumer, unassigned_since = None, None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer, unassigned_since = self._new_consumer(), time.monotonic()
                msgs = consumer.consume(num_messages=100, timeout=0.5)
                # A consumer that lost its group (broker restarted, topic re-created) can stay
                # without partitions for good: start a fresh one after 15 s without assignment.
                if consumer.assignment():
                    unassigned_since = None
                elif unassigned_since is None:
                    unassigned_since = time.monotonic()
                elif time.monotonic() - unassigned_since > 15:
                    self._warn_fol("sparkpilot: no decisions partition assigned for 15 s; "
                                   "reconnecting the follower")
                    consumer.close()
                    consumer = None
                    continue
                decisions = []
                for m in msgs:
                    if m.error():
                        self._warn_fol("sparkpilot: decisions topic: %s", m.error())
                        continue
                    try:
                        decisions.append(parse_decision(m.value()))
                    except ValueError as e:
                        log.warning("sparkpilot: decision at offset %s rejected: %s", m.offset(), e)
                if decisions:
                    self._follow(decisions)
            except Exception as e:  # noqa: BLE001
                self._warn_fol("sparkpilot: follower error: %r", e)
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                consumer = None
                time.sleep(1.0)
        if consumer is not None:
            consumer.close()

    def _follow(self, decisions: list[Decision]) -> None:
        with self._lock:
            followed, current = self.decision_time_s, self.target
        chosen, status = choose_decision(
            decisions, now=time.time(), max_age_s=self.cfg["decisionMaxAgeS"],
            followed_time_s=followed,
        )
        if chosen is None:
            log.info("sparkpilot: %s", status)
            with self._lock:
                if self.actuate:
                    self.status = status
            return
        if not self.actuate:
            return
        n = clamp_target(chosen.executors, current, lo=self.cfg["minExecutors"],
                         hi=self.cfg["maxExecutors"], max_step=self.cfg["maxStep"])
        if n != chosen.executors:
            status = "following (clamped)"
        self.set_target(n)
        with self._lock:
            self.target, self.decision_time_s, self.status = n, chosen.time_s, status
        log.info("sparkpilot: decision of %.3f asks %d executors, target %d",
                 chosen.time_s, chosen.executors, n)

    # ---- lifecycle ----

    def start(self) -> "Agent":
        if self.actuate:
            try:
                self.set_target(self.target)
            except Exception as e:  # noqa: BLE001
                log.warning("sparkpilot: could not set the initial target %d: %r", self.target, e)
        else:
            log.warning("sparkpilot: spark.dynamicAllocation.enabled=true; the agent only "
                        "publishes metrics (set it to false to let the agent scale)")
        for name, fn in (("publisher", self._publisher), ("follower", self._follower)):
            threading.Thread(target=fn, name=f"sparkpilot-{name}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def _listener_class() -> type:
    from pyspark.sql.streaming import StreamingQueryListener

    class SparkpilotListener(StreamingQueryListener):
        def __init__(self, agent: Agent) -> None:
            self.agent = agent

        def onQueryStarted(self, event: Any) -> None:
            pass

        def onQueryProgress(self, event: Any) -> None:
            try:
                self.agent.on_progress(event.progress.json)
            except Exception as e:  # noqa: BLE001
                log.warning("sparkpilot: progress callback failed: %r", e)

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            pass

    return SparkpilotListener


def attach(spark: Any, **overrides: Any) -> Agent:
    """Start the agent for ``spark``'s application; returns it (``agent.stop()`` to end it)."""
    conf = dict(spark.sparkContext.getConf().getAll())
    cfg = resolve_config(conf, os.environ, overrides)
    if not cfg["kafka.brokers"]:
        raise ValueError("no Kafka brokers: set spark.sparkpilot.kafka.brokers or KAFKA_BROKERS")
    agent = Agent(spark, cfg).start()
    spark.streams.addListener(_listener_class()(agent))
    log.info("sparkpilot: agent attached to %s (brokers %s, target %d, group %s)",
             agent.app_id, cfg["kafka.brokers"], agent.target, agent.group_id)
    return agent
