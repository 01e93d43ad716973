"""A Kafka streaming source for PySpark 4 written as a Python data source over confluent-kafka.

Spark's own Kafka connector (spark-sql-kafka) is a separate JVM package; this source needs only
the ``confluent-kafka`` wheel on the driver and the executors. Register and read it with::

    spark.dataSource.register(KafkaSource)
    df = (spark.readStream.format("sparkpilot_kafka")
          .option("brokers", "host:9092").option("topic", "iot-raw-data").load())

Rows: ``partition int, offset long, kafka_ts double (unix s), key string, value string``.

Options:
  brokers, topic          required
  startingOffsets         "latest" (default) or "earliest", for a query without a checkpoint
  splitsPerPartition      input partitions (Spark tasks) per Kafka partition per batch (default 4),
                          so that more executors mean more parallelism
  maxEventsPerBatch       cap on events per micro-batch (default 0: no cap), Spark admission control
  readTimeoutS            how long a task waits for an unreachable broker before failing (120)

Offsets are JSON objects ``{"<partition>": <next offset>}``. ``latestOffset`` never raises when
the broker is away: it returns the last offsets it knew, so the query idles instead of failing.
The broker's high watermark seen when planning a batch is returned from ``reportLatestOffset``,
so the query progress shows it as the source's ``latestOffset``: with a cap, ``latestOffset -
endOffset`` is the backlog left behind by the batch (what the sparkpilot agent reports).

A partition whose high watermark falls below the committed offset (topic deleted and re-created,
e.g. a broker with memory storage restarted) is read again from its start; events that vanished
with the old topic are skipped with a warning.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Iterator

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows

log = logging.getLogger("sparkpilot.kafka_source")

SCHEMA = "partition int, offset long, kafka_ts double, key string, value string"


class OffsetRange(InputPartition):
    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


def split_range(start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """Cut [start, end) into at most ``parts`` contiguous, non-empty, near-equal ranges."""
    n = end - start
    if n <= 0:
        return []
    parts = max(1, min(parts, n))
    step, extra = divmod(n, parts)
    out, lo = [], start
    for i in range(parts):
        hi = lo + step + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def cap_offsets(start: dict[str, int], latest: dict[str, int], max_rows: int | None) -> dict[str, int]:
    """End offsets taking at most ``max_rows`` events in all, shared out evenly over partitions."""
    begin = {p: (start.get(p, 0) if start.get(p, 0) <= hi else 0) for p, hi in latest.items()}
    if max_rows is None:
        return dict(latest)
    end, budget = dict(begin), max(int(max_rows), 0)
    waiting = {p: latest[p] - begin[p] for p in latest if latest[p] > begin[p]}
    while budget > 0 and waiting:
        share = max(budget // len(waiting), 1)
        for p in sorted(waiting):
            take = min(share, waiting[p], budget)
            end[p] += take
            waiting[p] -= take
            budget -= take
        waiting = {p: w for p, w in waiting.items() if w > 0}
    return end


class KafkaStreamReader(DataSourceStreamReader):
    def __init__(self, options: dict[str, str]) -> None:
        options = {k.lower(): v for k, v in options.items()}  # Spark options ignore case
        self.brokers = options["brokers"]
        self.topic = options["topic"]
        self.starting = options.get("startingoffsets", "latest")
        self.splits = int(options.get("splitsperpartition", "4"))
        self.max_events = int(options.get("maxeventsperbatch", "0"))
        self.read_timeout_s = float(options.get("readtimeouts", "120"))
        self._admin: Any = None
        self._last: dict[str, int] | None = None  # broker high watermarks, last seen

    # -- driver side --

    def _client(self) -> Any:
        from confluent_kafka import Consumer

        if self._admin is None:
            self._admin = Consumer({
                "bootstrap.servers": self.brokers,
                "group.id": f"sparkpilot-source-meta-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "reconnect.backoff.max.ms": 2000,
            })
        return self._admin

    def _watermarks(self, timeout: float = 2.0) -> dict[str, tuple[int, int]]:
        from confluent_kafka import TopicPartition

        client = self._client()
        meta = client.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {self.topic} unavailable: {meta and meta.error}")
        out = {}
        for p in sorted(meta.partitions):
            lo, hi = client.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout, cached=False)
            out[str(p)] = (lo, hi)
        return out

    def initialOffset(self) -> dict:
        deadline = time.time() + self.read_timeout_s
        while True:
            try:
                marks = self._watermarks()
                break
            except Exception as e:  # noqa: BLE001
                if time.time() > deadline:
                    raise
                log.warning("kafka source: waiting for %s: %r", self.topic, e)
                time.sleep(1)
        pick = 0 if self.starting == "earliest" else 1
        return {p: m[pick] for p, m in marks.items()}

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        try:
            self._last = {p: hi for p, (_, hi) in self._watermarks().items()}
        except Exception as e:  # noqa: BLE001 - broker away: stay where we are
            log.warning("kafka source: broker unavailable, keeping offsets: %r", e)
            self._admin = None
            return dict(start)
        for p, off in start.items():
            if self._last.get(p, off) < off:
                log.warning("kafka source: partition %s went back from %d to %d (topic re-created); "
                            "reading it again from its start", p, off, self._last[p])
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return cap_offsets(start, self._last, max_rows)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_events) if self.max_events > 0 else ReadAllAvailable()

    def reportLatestOffset(self) -> dict | None:
        return dict(self._last) if self._last is not None else None

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        out: list[InputPartition] = []
        for p, hi in sorted(end.items()):
            lo = start.get(p, 0)
            if hi < lo:  # re-created partition: its new offsets start again at 0
                lo = 0
            out.extend(OffsetRange(self.topic, int(p), a, b) for a, b in split_range(lo, hi, self.splits))
        return out

    def commit(self, end: dict) -> None:
        pass

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    # -- executor side --

    def read(self, partition: OffsetRange) -> Iterator[tuple]:
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        consumer = Consumer({
            "bootstrap.servers": self.brokers,
            "group.id": "sparkpilot-source-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "reconnect.backoff.max.ms": 2000,
        })
        try:
            consumer.assign([TopicPartition(partition.topic, partition.partition, partition.start)])
            nxt, last_progress = partition.start, time.time()
            last_check = time.time()
            while nxt < partition.end:
                msgs = consumer.consume(num_messages=min(1000, partition.end - nxt), timeout=1.0)
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if m.offset() < partition.end:  # the range is gone from the broker
                                log.warning("kafka source: %s[%d] ends at %d, wanted up to %d; "
                                            "skipping the rest", partition.topic, partition.partition,
                                            m.offset(), partition.end)
                                return
                            continue
                        if err.fatal():
                            raise RuntimeError(f"kafka: {err}")
                        continue
                    off = m.offset()
                    if off < nxt:
                        continue
                    if off >= partition.end:
                        return
                    nxt = off + 1
                    last_progress = time.time()
                    key = m.key()
                    _, ts_ms = m.timestamp()
                    yield (partition.partition, off, ts_ms / 1000.0,
                           key.decode("utf-8", "replace") if key is not None else None,
                           (m.value() or b"").decode("utf-8", "replace"))
                if not msgs and time.time() - last_check > 2.0:
                    last_check = time.time()
                    try:  # has the range vanished (topic re-created) while we wait?
                        _, high = consumer.get_watermark_offsets(
                            TopicPartition(partition.topic, partition.partition), timeout=2.0, cached=False)
                    except Exception:  # noqa: BLE001 - broker away: keep waiting
                        high = None
                    if high is not None and high < partition.end:
                        log.warning("kafka source: %s[%d] now ends at %d, wanted up to %d; skipping "
                                    "the rest", partition.topic, partition.partition, high, partition.end)
                        return
                if time.time() - last_progress > self.read_timeout_s:
                    raise TimeoutError(f"no data from {partition.topic}[{partition.partition}] "
                                       f"for {self.read_timeout_s}s at offset {nxt}")
        finally:
            consumer.close()


class KafkaSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "sparkpilot_kafka"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> DataSourceStreamReader:
        for required in ("brokers", "topic"):
            if required not in self.options:
                raise ValueError(f"sparkpilot_kafka: option {required!r} is required")
        return KafkaStreamReader(dict(self.options))
