"""Drive the example job through load phases and keep the micro-batches it reports.

    $SPARKPILOT_VENV/bin/python spark/calibrate.py --brokers B --topic RAW --metrics-topic M --out FILE

The job (spark/iot_job.py with the agent, held at a fixed executor count) must already read RAW and
publish to M. Each phase produces events of one size at one rate for a while; every spark-metrics
record that arrives during a phase, past its first seconds (the job catching up with the change), is
written as one line (a warm-up phase first is not kept) ``{"phase", "bytes_per_event", "cores_per_executor", "metrics"}``, the input of
``sparkpilot calibrate --job FILE``. Varying rate separates the batch overhead from the per-event
cost; varying size separates the per-event from the per-MB part.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from confluent_kafka import Consumer, Producer

# (events/s, pad bytes): a warm-up (not kept: the first batches pay for the job's start), small
# events at four rates, large ones at three.
WARM_UP = (200, 200)
PHASES = [(100, 200), (1_000, 200), (3_000, 200), (6_000, 200), (50, 20_000), (300, 20_000), (800, 20_000)]


def event_bytes(pad: int) -> int:
    sample = {"edge_id": "edge-000", "device_id": "dev-000-00", "ts": time.time(), "value": 20.0, "pad": "x" * pad}
    return len(json.dumps(sample))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--metrics-topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--phase-seconds", type=float, default=25.0)
    ap.add_argument("--settle-seconds", type=float, default=6.0)
    ap.add_argument("--cores-per-executor", type=float, default=1.0)
    args = ap.parse_args()

    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20, "queue.buffering.max.messages": 500_000})
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"calibrate-{time.time_ns()}",
                         "auto.offset.reset": "latest", "session.timeout.ms": 6000})
    consumer.subscribe([args.metrics_topic])
    rng = random.Random(11)
    kept = 0
    with open(args.out, "w") as out:
        for i, (rate, pad) in enumerate([WARM_UP] + PHASES):
            size = event_bytes(pad)
            start = time.time()
            sent = 0
            while time.time() - start < args.phase_seconds:
                due = int((time.time() - start) * rate)
                while sent < due:
                    edge = rng.randrange(32)
                    event = {"edge_id": f"edge-{edge:03d}", "device_id": f"dev-{edge:03d}-{rng.randrange(100):02d}",
                             "ts": time.time(), "value": rng.gauss(20.0, 5.0), "pad": "x" * pad}
                    try:
                        producer.produce(args.topic, key=event["device_id"], value=json.dumps(event))
                    except BufferError:
                        producer.poll(0.05)
                        continue
                    sent += 1
                producer.poll(0)
                msg = consumer.poll(0.02)
                if msg is None or msg.error():
                    continue
                try:
                    record = json.loads(msg.value())
                except ValueError:
                    continue
                # Batches that ended while the job was still settling into this phase are left out.
                if i == 0 or record.get("timestamp", 0) - start < args.settle_seconds:
                    continue
                out.write(json.dumps({"phase": i, "bytes_per_event": size, "cores_per_executor": args.cores_per_executor, "metrics": record}) + "\n")
                kept += 1
            print(f"phase {i}: {rate} events/s of {size} B, {sent} produced, {kept} batches kept so far", flush=True)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
