"""Example IoT streaming job driven by the sparkpilot agent.

Reads JSON events ``{"edge_id", "device_id", "ts", "value", "pad"}`` from Kafka (through
kafka_source.py), parses them in the Python worker (a real per-event CPU cost), drops replays of
the same (device_id, ts) within a 10-second event-time watermark, and in each micro-batch
aggregates per edge_id over 10-second event-time windows (count, mean, max), written to a
counting sink. Per batch it can append one line of end-to-end latency (batch end minus the
event's ``ts``) to ``--latency-out``:
``{"batch_id", "end_s", "events", "p50_ms", "p95_ms", "p99_ms", "max_ms", "buckets_ms", "histogram"}``
(the histogram counts the batch's events per bucket of ``buckets_ms`` upper bounds, plus one above).

    spark-submit --py-files sparkpilot_agent.py,kafka_source.py iot_job.py \
        --brokers 127.0.0.1:9092 --topic iot-raw-data --checkpoint /tmp/ckpt
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Iterator

import pyarrow as pa
from pyspark import cloudpickle
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import kafka_source
import sparkpilot_agent
from kafka_source import KafkaSource

EVENT_SCHEMA = "edge_id string, device_id string, ts double, value double"


def parse_events(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """JSON text -> typed columns, one event at a time; malformed events are dropped."""
    for batch in batches:
        cols: dict[str, list] = {"edge_id": [], "device_id": [], "ts": [], "value": []}
        for text in batch.column("value").to_pylist():
            try:
                e = json.loads(text)
                row = (str(e["edge_id"]), str(e["device_id"]), float(e["ts"]), float(e["value"]))
            except (TypeError, ValueError, KeyError):
                continue
            for name, v in zip(cols, row):
                cols[name].append(v)
        yield pa.RecordBatch.from_pydict(cols, schema=pa.schema([
            ("edge_id", pa.string()), ("device_id", pa.string()),
            ("ts", pa.float64()), ("value", pa.float64()),
        ]))


# Upper bounds (ms) of the latency histogram each batch line carries, so that a reader can merge
# batches into percentiles of the whole run; the last bucket is everything above 60 s.
LATENCY_BUCKETS_MS = [100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000]


def histogram(latencies_ms: list[float]) -> list[int]:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for v in latencies_ms:
        i = next((k for k, b in enumerate(LATENCY_BUCKETS_MS) if v <= b), len(LATENCY_BUCKETS_MS))
        counts[i] += 1
    return counts


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(int(q * len(sorted_values)), len(sorted_values) - 1)
    return sorted_values[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default="iot-raw-data")
    ap.add_argument("--trigger-seconds", type=float, default=1.0)
    ap.add_argument("--checkpoint", default="/tmp/sparkpilot-iot-checkpoint")
    ap.add_argument("--latency-out", default="")
    ap.add_argument("--max-events-per-batch", type=int, default=0)
    ap.add_argument("--splits-per-partition", type=int, default=4)
    args = ap.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spark = SparkSession.builder.appName("sparkpilot-iot").getOrCreate()
    # The Python processes that plan the source on the driver do not see --py-files: ship the
    # source's code inside the pickled data source instead of by module reference.
    cloudpickle.register_pickle_by_value(kafka_source)
    spark.dataSource.register(KafkaSource)
    sparkpilot_agent.attach(spark, **{"kafka.brokers": args.brokers})

    raw = (spark.readStream.format("sparkpilot_kafka")
           .option("brokers", args.brokers).option("topic", args.topic)
           .option("splitsPerPartition", str(args.splits_per_partition))
           .option("maxEventsPerBatch", str(args.max_events_per_batch))
           .load())
    events = (raw.select("value").mapInArrow(parse_events, EVENT_SCHEMA)
              .withColumn("event_time", F.timestamp_seconds("ts"))
              .withWatermark("event_time", "10 seconds")
              .dropDuplicatesWithinWatermark(["device_id", "ts"]))

    def per_batch(df, batch_id: int) -> None:
        df.persist()
        try:
            windows = (df.groupBy(F.window("event_time", "10 seconds"), "edge_id")
                       .agg(F.count("*").alias("events"), F.avg("value").alias("mean"),
                            F.max("value").alias("max")))
            windows.count()  # the sink: counts the window rows of the batch
            sent = [r.ts for r in df.select("ts").collect()]
            end = time.time()
        finally:
            df.unpersist()
        if args.latency_out and sent:
            lat = sorted(max(end - ts, 0.0) * 1000.0 for ts in sent)
            line = {"batch_id": batch_id, "end_s": end, "events": len(lat),
                    "p50_ms": percentile(lat, 0.50), "p95_ms": percentile(lat, 0.95),
                    "p99_ms": percentile(lat, 0.99), "max_ms": lat[-1],
                    "buckets_ms": LATENCY_BUCKETS_MS, "histogram": histogram(lat)}
            with open(args.latency_out, "a") as f:
                f.write(json.dumps(line) + "\n")

    query = (events.writeStream.outputMode("append").foreachBatch(per_batch)
             .option("checkpointLocation", args.checkpoint)
             .trigger(processingTime=f"{args.trigger_seconds} seconds")
             .queryName("sparkpilot-iot").start())
    query.awaitTermination()


if __name__ == "__main__":
    main()
