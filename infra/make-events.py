#!/usr/bin/env python3
"""Write the sample events in events/ (deterministic: same files every run).

Each file is an invocation payload exactly as the platform delivers it: MSK and self-managed Kafka
batches with base64 record values, an EventBridge schedule, direct-invoke bodies.
"""
import base64, json, os, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "events")
T0 = 1795341600  # 2026-11-22T10:00:00Z
ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/sparkpilot/6f1b2c3d-0000-4000-8000-000000000001-1"


def b64(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


def record(topic, partition, offset, ts_ms, value, key=None):
    return {
        "topic": topic, "partition": partition, "offset": offset, "timestamp": ts_ms,
        "timestampType": "CREATE_TIME", "key": b64(key.encode()) if key else None,
        "value": value, "headers": [],
    }


def msk(topic, records, source="aws:kafka"):
    by_partition = {}
    for r in records:
        by_partition.setdefault(f"{topic}-{r['partition']}", []).append(r)
    event = {"eventSource": source, "bootstrapServers": "b-1.sparkpilot.kafka.us-east-1.amazonaws.com:9098", "records": by_partition}
    if source == "aws:kafka":
        event["eventSourceArn"] = ARN
    return event


def edge_batch(edges=4, seconds=70, step_at=60, base=250.0, factor=4.0):
    """Per-second raw rate samples from each edge: flat, then a step (a burst) at `step_at`."""
    out, offset = [], 0
    for s in range(seconds):
        for e in range(edges):
            rate = base * (factor if s >= step_at else 1.0)
            rec = {"edge_id": f"gw-{e:03d}", "timestamp": T0 + s, "rate": rate}
            if s % 10 == 9:  # every ten seconds, a control message from the gateway as well
                rec["predicted_load"] = rate * (factor if s + 10 >= step_at else 1.0)
                rec["burst_signal"] = s + 10 >= step_at
            out.append(record("iot-metadata", e % 2, offset, (T0 + s) * 1000, b64(rec), key=f"gw-{e:03d}"))
            offset += 1
    return out


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    write("burst-signal-msk.json", msk("iot-metadata", edge_batch()))
    write("burst-signal-self-managed.json", msk("iot-metadata", edge_batch(edges=2, seconds=5, step_at=99), source="SelfManagedKafka"))
    bad = [
        record("iot-metadata", 0, 0, T0 * 1000, b64({"edge_id": "gw-001", "timestamp": T0, "rate": 120.0})),
        record("iot-metadata", 0, 1, T0 * 1000, "not base64 at all!"),
        record("iot-metadata", 0, 2, T0 * 1000, b64(b"{\"edge_id\": \"gw-002\", ")),
        record("iot-metadata", 0, 3, T0 * 1000, None),
        record("iot-metadata", 0, 4, T0 * 1000, b64({"edge_id": "gw-003", "timestamp": T0, "rate": -5.0})),
        record("iot-metadata", 0, 5, T0 * 1000, b64({"edge_id": "gw-004", "timestamp": T0 + 1, "rate": 130.0})),
    ]
    write("burst-signal-msk-malformed.json", msk("iot-metadata", bad))
    burst = {"kind": "burst", "burst": True, "time_s": T0 + 62.0, "total_rate": 4000.0, "predicted_load": 4000.0, "edges": 4, "edges_bursting": 4}
    write("scaling-decision-burst.json", msk("scaling-requests", [record("scaling-requests", 0, 41, (T0 + 62) * 1000, b64(burst), key="cluster")]))
    metrics = [
        {"timestamp": T0 + 30 * i, "input_rate": r, "processing_rate": min(r, 1800.0), "batch_duration_ms": 850.0 + 10 * i,
         "backlog": max(0.0, (r - 1800.0) * 30), "cpu_utilisation": 0.7, "memory_utilisation": 0.55,
         "running_executors": 4, "pending_executors": 0, "bytes_per_event": 2500.0}
        for i, r in enumerate([1000.0, 1200.0, 2600.0, 4000.0])
    ]
    write("scaling-decision-spark-metrics.json", msk("spark-metrics", [record("spark-metrics", 0, 100 + i, int(m["timestamp"] * 1000), b64(m)) for i, m in enumerate(metrics)]))
    write("schedule.json", {
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-22T10:05:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/sparkpilot-every-minute"], "detail": {},
    })
    write("meta-weights-context.json", {"scenario": "healthcare_critical", "budget_remaining": 42.5, "budget_usd": 60.0, "horizon_s": 86400})
    blocks = []
    for bid, n, access, age, burst_flag, archival in [
        ("shuffle_7_0_0", 16384, 12, 4.0, False, False),     # hot: read often, just written -> Redis
        ("shuffle_7_1_0", 8192, 0, 10.0, True, False),      # written during a burst -> Redis
        ("shuffle_7_2_0", 8192, 2, 60.0, False, False),     # warm -> NVMe
        ("shuffle_6_0_0", 4096, 0, 7200.0, False, False),   # cold -> S3
        ("shuffle_5_0_0", 2048, 0, 86400.0, False, True),    # archival -> Glacier
    ]:
        payload = bytes(((i * 31 + len(bid)) % 251) for i in range(n))
        blocks.append({"block_id": bid, "size_bytes": n, "access_count": access, "age_s": age, "burst": burst_flag, "archival": archival, "payload_b64": b64(payload)})
    write("shuffle-router-manifest.json", {"blocks": blocks})
    write("shuffle-router-read.json", {"op": "read", "block_id": "shuffle_7_0_0"})
    write("shuffle-router-move.json", {"op": "move", "block_id": "shuffle_7_2_0", "tier": "s3"})
    write("shuffle-router-msk.json", msk("shuffle-manifests", [record("shuffle-manifests", 0, i, T0 * 1000, b64(b)) for i, b in enumerate(blocks[:2])]))


if __name__ == "__main__":
    main()
