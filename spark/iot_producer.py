"""Produce synthetic IoT events into Kafka at a steady rate (load for spark/iot_job.py).

    $SPARKPILOT_VENV/bin/python spark/iot_producer.py --brokers 127.0.0.1:9092 --rate 1000

Events: {"edge_id", "device_id", "ts" (unix s when produced), "value", "pad"}. Keeps going through
broker outages (librdkafka buffers and retries); prints one line of counts every 10 s.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from confluent_kafka import KafkaException, Producer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default="iot-raw-data")
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    ap.add_argument("--edges", type=int, default=32)
    ap.add_argument("--pad-bytes", type=int, default=200)
    args = ap.parse_args()

    failed = 0

    def delivered(err, _msg) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20, "acks": 1,
                         "message.timeout.ms": 120_000, "queue.buffering.max.messages": 500_000})
    pad = "x" * args.pad_bytes
    rng = random.Random(7)
    start = last_report = time.time()
    sent = 0
    while not args.seconds or time.time() - start < args.seconds:
        due = int((time.time() - start) * args.rate)
        while sent < due:
            edge = rng.randrange(args.edges)
            event = {"edge_id": f"edge-{edge:03d}", "device_id": f"dev-{edge:03d}-{rng.randrange(100):02d}",
                     "ts": time.time(), "value": rng.gauss(20.0, 5.0), "pad": pad}
            try:
                producer.produce(args.topic, key=event["device_id"], value=json.dumps(event),
                                 on_delivery=delivered)
                sent += 1
            except BufferError:
                break
            except KafkaException as e:  # e.g. the topic is gone while a broker restarts
                print(f"produce failed, retrying: {e}", flush=True)
                time.sleep(1)
                break
        producer.poll(0.01)
        if time.time() - last_report >= 10:
            print(f"produced {sent} events, {failed} failed deliveries, {len(producer)} in flight",
                  flush=True)
            last_report = time.time()
    producer.flush(30)


if __name__ == "__main__":
    main()
