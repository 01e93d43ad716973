//! What invokes a function, decoded from either platform into one [`Trigger`]:
//! Lambda (MSK or self-managed Kafka event source, EventBridge schedule, direct invoke) and OpenFaaS
//! (kafka-connector and cron-connector POSTs to the of-watchdog, or a JSON body).

use crate::HandlerError;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use base64::Engine;
use serde::Serialize;

/// One Kafka record. `value` is `None` for a tombstone (null value), `Err` when it was not base64.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaMessage {
    /// Shared by the records of a batch: one allocation per topic, not per record.
    pub topic: std::sync::Arc<str>,
    pub partition: i64,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Result<Vec<u8>, String>>,
}

impl KafkaMessage {
    /// Whether the record is stamped more than `max_skew_s` ahead of `now_s`.
    pub fn ahead_of_clock(&self, max_skew_s: f64, now_s: f64) -> bool {
        self.timestamp_ms as f64 / 1_000.0 > now_s + max_skew_s
    }

    /// Where the record came from, for error reports.
    pub fn locator(&self) -> RecordRef {
        RecordRef { topic: self.topic.to_string(), partition: self.partition, offset: self.offset }
    }
}

/// Identifies a record in an error report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RecordRef {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
}

/// A record the handler could not use, and why. The rest of the batch goes on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordError {
    #[serde(flatten)]
    pub record: RecordRef,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A batch of Kafka records, in the order the event listed them (partition by partition).
    Kafka(Vec<KafkaMessage>),
    /// A scheduled run at `time_s` (Unix seconds).
    Schedule { time_s: f64 },
    /// A direct invocation with a JSON payload.
    Direct(serde_json::Value),
}

impl Trigger {
    /// When the triggering event happened, Unix seconds: a schedule's time, the newest record's
    /// Kafka timestamp (event time, so that a replay or a delayed batch is judged at the time its
    /// records describe), or the clock when neither says. Records stamped more than `max_skew_s`
    /// ahead of this machine's clock do not count: one record stamped in the year 2286 once set a
    /// scale-up time that held every scale-down back for hours.
    pub fn time_s(&self, max_skew_s: f64) -> f64 {
        let now = now_s();
        match self {
            Trigger::Schedule { time_s } => *time_s,
            Trigger::Kafka(records) => match records
                .iter()
                .filter(|r| !r.ahead_of_clock(max_skew_s, now))
                .map(|r| r.timestamp_ms)
                .max()
            {
                Some(ms) if ms > 0 => ms as f64 / 1_000.0,
                _ => now,
            },
            Trigger::Direct(_) => now_s(),
        }
    }
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("value is not valid base64: {e}"))
}

/// The parts of a Kafka event source batch the handlers use, borrowed from the payload. Decoding
/// into `aws_lambda_events`' `KafkaEvent` allocates every field of every record (headers included)
/// and took 1.6 µs per record in the burst-signal benchmark; this takes a fraction of that. A test
/// checks that both read the sample events the same way.
#[derive(serde::Deserialize)]
struct LeanKafkaEvent<'a> {
    #[serde(borrow, default)]
    records: std::collections::HashMap<JsonStr<'a>, Vec<LeanKafkaRecord<'a>>>,
}

/// One record of a batch as sent, every field taken as whatever JSON it is: a record with a field of
/// the wrong type (`partition` missing, `offset` a string, `value` a number) is then one record's
/// error, not the whole batch's. Unknown fields (`headers`, `timestampType`) are skipped.
#[derive(serde::Deserialize)]
struct LeanKafkaRecord<'a> {
    #[serde(borrow, default)]
    topic: Option<Loose<'a>>,
    #[serde(borrow, default)]
    partition: Option<Loose<'a>>,
    #[serde(borrow, default)]
    offset: Option<Loose<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Loose<'a>>,
    #[serde(borrow, default)]
    key: Option<Loose<'a>>,
    #[serde(borrow, default)]
    value: Option<Loose<'a>>,
}

/// Any JSON value, kept only as far as the envelope needs: integers, strings (borrowed when they
/// have no escapes) and the kind of anything else, for the error message. `null` reads as `None` of
/// the surrounding `Option`.
enum Loose<'a> {
    Int(i64),
    Str(JsonStr<'a>),
    Other(&'static str),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Loose<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Other("a boolean"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Loose::Other("an integer beyond 64 bits"), Loose::Int))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::Other("a fractional number"))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(JsonStr(std::borrow::Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(JsonStr(std::borrow::Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(JsonStr(std::borrow::Cow::Owned(v))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("a list"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("an object"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Loose<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Loose::Int(_) => "an integer",
            Loose::Str(_) => "a string",
            Loose::Other(k) => k,
        }
    }
}

/// An integer field of the envelope.
fn envelope_int(field: &str, v: Option<&Loose<'_>>, required: bool) -> Result<Option<i64>, String> {
    match v {
        Some(Loose::Int(i)) => Ok(Some(*i)),
        None if !required => Ok(None),
        None => Err(format!("record has no {field}")),
        Some(other) => Err(format!("{field} is {}, expected an integer", other.kind())),
    }
}

/// A base64 string field of the envelope (`None` when absent or null).
fn envelope_b64(field: &str, v: Option<&Loose<'_>>) -> Option<Result<Vec<u8>, String>> {
    match v {
        None => None,
        Some(Loose::Str(s)) => Some(b64(s).map_err(|e| format!("{field}: {e}"))),
        Some(other) => Some(Err(format!("{field} is {}, expected a base64 string", other.kind()))),
    }
}

/// A JSON string borrowed from the payload when it has no escapes (topic names and base64 never
/// do), owned otherwise. serde borrows a `Cow<str>` only when it is a field's own type: inside an
/// `Option` or as a map key it always allocates, which cost a string per record here.
struct JsonStr<'a>(std::borrow::Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for JsonStr<'_> {}
impl std::hash::Hash for JsonStr<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

/// A payload read once: what invoked the function and, for a Kafka batch, its records. Parsing a
/// large batch is most of a burst-signal invocation's decoding, so it must not be parsed twice.
#[derive(serde::Deserialize)]
struct LeanEnvelope<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    records: Option<std::collections::HashMap<JsonStr<'a>, Vec<LeanKafkaRecord<'a>>>>,
}

fn is_kafka_source(source: &str) -> bool {
    source == "aws:kafka" || source == "SelfManagedKafka"
}

fn kafka_messages(event: LeanKafkaEvent<'_>) -> Vec<KafkaMessage> {
    let mut batches: Vec<(String, i64, Vec<LeanKafkaRecord<'_>>)> = event
        .records
        .into_iter()
        .map(|(k, v)| {
            // "topic-partition" keys: a stable order, partitions in numeric order.
            let (t, p) = k.rsplit_once('-').unwrap_or((&*k, "-1"));
            (t.to_string(), p.parse::<i64>().unwrap_or(-1), v)
        })
        .collect();
    batches.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.2.len()).sum());
    let mut topic: std::sync::Arc<str> = std::sync::Arc::from("");
    for (batch_topic, batch_partition, records) in batches {
        for r in records {
            let name = match &r.topic {
                Some(Loose::Str(t)) => &**t,
                _ => batch_topic.as_str(),
            };
            if *topic != *name {
                topic = std::sync::Arc::from(name);
            }
            out.push(envelope_message(topic.clone(), batch_partition, &r));
        }
    }
    out
}

/// A record of the batch; a malformed envelope becomes the record's error (its `value`), with what
/// position it has (-1 where the envelope does not say).
fn envelope_message(
    topic: std::sync::Arc<str>,
    batch_partition: i64,
    r: &LeanKafkaRecord<'_>,
) -> KafkaMessage {
    let partition = envelope_int("partition", r.partition.as_ref(), true);
    let offset = envelope_int("offset", r.offset.as_ref(), true);
    let timestamp = envelope_int("timestamp", r.timestamp.as_ref(), false);
    let key = envelope_b64("key", r.key.as_ref());
    let topic_error = match &r.topic {
        None | Some(Loose::Str(_)) => None,
        Some(other) => Some(format!("topic is {}, expected a string", other.kind())),
    };
    let mut message = KafkaMessage {
        topic,
        partition: partition.as_ref().ok().copied().flatten().unwrap_or(batch_partition),
        offset: offset.as_ref().ok().copied().flatten().unwrap_or(-1),
        timestamp_ms: timestamp.as_ref().ok().copied().flatten().unwrap_or(0),
        key: None,
        value: envelope_b64("value", r.value.as_ref()),
    };
    let error = topic_error.or(partition.err()).or(offset.err()).or(timestamp.err());
    match (error, key) {
        (Some(e), _) | (None, Some(Err(e))) => message.value = Some(Err(e)),
        (None, key) => message.key = key.and_then(Result::ok),
    }
    message
}

/// Decode a Lambda invocation payload from its bytes (the function binaries' path).
pub fn decode_lambda_bytes(bytes: &[u8]) -> Result<Trigger, HandlerError> {
    let lean_error = match serde_json::from_slice::<LeanEnvelope>(bytes) {
        Ok(env) if env.event_source.as_deref().is_some_and(is_kafka_source) => {
            return Ok(Trigger::Kafka(kafka_messages(LeanKafkaEvent {
                records: env.records.unwrap_or_default(),
            })));
        }
        Ok(_) => None,
        // Not a Kafka batch's shape (a direct call may carry its own `records`), or not JSON.
        Err(e) => Some(e),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| HandlerError::BadEvent(format!("payload is not JSON: {e}")))?;
    if let Some(e) = lean_error {
        if value.get("eventSource").and_then(|v| v.as_str()).is_some_and(is_kafka_source) {
            return Err(HandlerError::BadEvent(format!("Kafka event: {e}")));
        }
    }
    decode_lambda(value)
}

/// Decode a Lambda invocation payload.
pub fn decode_lambda(payload: serde_json::Value) -> Result<Trigger, HandlerError> {
    let source = payload.get("eventSource").and_then(|v| v.as_str()).unwrap_or_default();
    if is_kafka_source(source) {
        let bytes = serde_json::to_vec(&payload).map_err(|e| HandlerError::BadEvent(e.to_string()))?;
        let event: LeanKafkaEvent = serde_json::from_slice(&bytes)
            .map_err(|e| HandlerError::BadEvent(format!("Kafka event: {e}")))?;
        return Ok(Trigger::Kafka(kafka_messages(event)));
    }
    let scheduled = payload.get("source").and_then(|v| v.as_str()) == Some("aws.events")
        || payload.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event");
    if scheduled {
        let event: EventBridgeEvent<serde_json::Value> = serde_json::from_value(payload)
            .map_err(|e| HandlerError::BadEvent(format!("EventBridge event: {e}")))?;
        return Ok(Trigger::Schedule {
            time_s: event.time.map(|t| t.timestamp_millis() as f64 / 1_000.0).unwrap_or_else(now_s),
        });
    }
    Ok(Trigger::Direct(payload))
}

/// Decode an OpenFaaS request: a kafka-connector message (raw record body, `X-Topic` header), a
/// cron-connector call, or a JSON body decoded as a Lambda payload would be.
pub fn decode_http(
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    now_s: f64,
) -> Result<Trigger, HandlerError> {
    if let Some(topic) = header("x-topic") {
        let num = |name: &str| header(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(-1);
        return Ok(Trigger::Kafka(vec![KafkaMessage {
            topic: topic.into(),
            partition: num("x-kafka-partition"),
            offset: num("x-kafka-offset"),
            timestamp_ms: (now_s * 1_000.0) as i64,
            // The connector sends binary keys base64-encoded and says so in X-Kafka-Key-Enc.
            key: header("x-kafka-key").map(|k| {
                if header("x-kafka-key-enc").as_deref() == Some("b64") {
                    b64(&k).unwrap_or_else(|_| k.into_bytes())
                } else {
                    k.into_bytes()
                }
            }),
            value: if body.is_empty() { None } else { Some(Ok(body.to_vec())) },
        }]));
    }
    if header("x-connector").is_some_and(|c| c.contains("cron-connector")) {
        return Ok(Trigger::Schedule { time_s: now_s });
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Trigger::Schedule { time_s: now_s });
    }
    decode_lambda_bytes(body).map_err(|e| match e {
        HandlerError::BadEvent(m) if m.starts_with("payload is not") => {
            HandlerError::BadEvent(format!("request body is not JSON: {m}"))
        }
        other => other,
    })
}

/// Seconds since the Unix epoch, now.
pub fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_decoding_parses_once_and_still_tells_the_event_kinds_apart() {
        // A direct call carrying its own `records` list is not a Kafka batch.
        let direct = br#"{"records": [{"edge_id": "e1", "timestamp": 1.0, "rate": 5.0}]}"#;
        assert!(matches!(decode_lambda_bytes(direct).unwrap(), Trigger::Direct(_)));
        // A Kafka batch whose record lists have the wrong shape is a Kafka error, not a direct call.
        let bad = br#"{"eventSource": "aws:kafka", "records": {"t-0": 5}}"#;
        let err = decode_lambda_bytes(bad).unwrap_err().to_string();
        assert!(err.contains("Kafka event"), "{err}");
        // Not JSON at all.
        assert!(decode_lambda_bytes(b"{not json").unwrap_err().to_string().contains("not JSON"));
        // Records of one topic share one topic allocation.
        let ok = br#"{"eventSource": "aws:kafka", "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 1, "value": "e30="}, {"topic": "t", "partition": 0, "offset": 2, "value": null}]}}"#;
        let Trigger::Kafka(records) = decode_lambda_bytes(ok).unwrap() else { panic!("a Kafka batch") };
        assert_eq!(records.len(), 2);
        assert!(std::sync::Arc::ptr_eq(&records[0].topic, &records[1].topic));
        assert_eq!(records[0].value, Some(Ok(b"{}".to_vec())));
        assert_eq!(records[1].value, None);
        // Strings with JSON escapes cannot be borrowed from the payload; they still decode.
        let escaped = br#"{"eventSource": "aws:kafka", "records": {"t\u002d0": [{"topic": "\u0074", "partition": 0, "offset": 1, "value": "e30\u003d", "key": "a2V5"}]}}"#;
        let Trigger::Kafka(records) = decode_lambda_bytes(escaped).unwrap() else { panic!("a Kafka batch") };
        assert_eq!((&*records[0].topic, records[0].partition), ("t", 0));
        assert_eq!(records[0].value, Some(Ok(b"{}".to_vec())));
        assert_eq!(records[0].key.as_deref(), Some(&b"key"[..]));
    }
    use serde_json::json;

    #[test]
    fn a_malformed_envelope_is_one_records_error_and_the_batch_goes_on() {
        let event = br#"{"eventSource": "aws:kafka", "records": {"t-3": [
            {"topic": "t", "offset": 1, "value": "e30="},
            {"topic": "t", "partition": 3, "offset": "2", "value": "e30="},
            {"topic": "t", "partition": 3, "offset": 3, "value": 42},
            {"topic": "t", "partition": 3, "offset": 4, "timestamp": 1.5, "value": "e30="},
            {"topic": "t", "partition": 3, "offset": 5, "key": 7, "value": "e30="},
            {"topic": 9, "partition": 3, "offset": 6, "value": "e30="},
            {"topic": "t", "partition": 3, "offset": 7, "value": "e30=", "timestamp": 1700000000000, "extra": {"a": [1]}}
        ]}}"#;
        let Trigger::Kafka(records) = decode_lambda_bytes(event).unwrap() else { panic!("a Kafka batch") };
        let errors: Vec<String> = records
            .iter()
            .map(|r| match &r.value {
                Some(Err(e)) => e.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(errors[0], "record has no partition");
        assert_eq!(errors[1], "offset is a string, expected an integer");
        assert_eq!(errors[2], "value is an integer, expected a base64 string");
        assert_eq!(errors[3], "timestamp is a fractional number, expected an integer");
        assert_eq!(errors[4], "key is an integer, expected a base64 string");
        assert_eq!(errors[5], "topic is an integer, expected a string");
        assert_eq!(errors[6], "");
        // Each error still says where the record was, as far as the envelope tells.
        assert_eq!((records[0].partition, records[0].offset), (3, 1));
        assert_eq!((records[1].partition, records[1].offset), (3, -1));
        assert_eq!(
            (records[6].offset, records[6].timestamp_ms, records[6].value.clone()),
            (7, 1_700_000_000_000, Some(Ok(b"{}".to_vec())))
        );
    }

    #[test]
    fn records_stamped_ahead_of_the_clock_do_not_set_the_time() {
        let now = now_s();
        let at = |ms: i64| KafkaMessage {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: ms,
            key: None,
            value: None,
        };
        let trigger = Trigger::Kafka(vec![at(((now - 10.0) * 1e3) as i64), at(9_999_999_999_999)]);
        let t = trigger.time_s(300.0);
        assert!((t - (now - 10.0)).abs() < 1.0, "{t}");
        assert!(!at(((now + 60.0) * 1e3) as i64).ahead_of_clock(300.0, now));
        assert!(at(9_999_999_999_999).ahead_of_clock(300.0, now));
    }

    #[test]
    fn msk_batches_decode_with_tombstones_and_bad_base64_kept_per_record() {
        let event = json!({
            "eventSource": "aws:kafka",
            "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
            "bootstrapServers": "b-1:9092",
            "records": {
                "iot-metadata-1": [
                    {"topic": "iot-metadata", "partition": 1, "offset": 7, "timestamp": 1700000000000i64, "timestampType": "CREATE_TIME", "value": "e30=", "headers": []}
                ],
                "iot-metadata-0": [
                    {"topic": "iot-metadata", "partition": 0, "offset": 3, "timestamp": 1700000000000i64, "timestampType": "CREATE_TIME", "value": null, "headers": []},
                    {"topic": "iot-metadata", "partition": 0, "offset": 4, "timestamp": 1700000000000i64, "timestampType": "CREATE_TIME", "value": "%%%", "headers": []}
                ]
            }
        });
        let Trigger::Kafka(records) = decode_lambda(event).unwrap() else { panic!("not kafka") };
        assert_eq!(
            records.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(),
            vec![(0, 3), (0, 4), (1, 7)]
        );
        assert_eq!(records[0].value, None);
        assert!(records[1].value.as_ref().unwrap().as_ref().unwrap_err().contains("base64"));
        assert_eq!(records[2].value, Some(Ok(b"{}".to_vec())));
    }

    #[test]
    fn the_lean_kafka_decoder_reads_the_samples_as_aws_lambda_events_does() {
        use aws_lambda_events::event::kafka::KafkaEvent;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        for name in [
            "burst-signal-msk.json",
            "burst-signal-self-managed.json",
            "burst-signal-msk-malformed.json",
            "scaling-decision-burst.json",
            "shuffle-router-msk.json",
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let Trigger::Kafka(lean) = decode_lambda_bytes(&bytes).unwrap() else {
                panic!("{name}: not kafka")
            };
            let reference: KafkaEvent = serde_json::from_slice(&bytes).unwrap();
            let mut expected: Vec<(String, i64, i64, i64, Option<String>)> = reference
                .records
                .values()
                .flatten()
                .map(|r| {
                    (
                        r.topic.clone().unwrap_or_default(),
                        r.partition,
                        r.offset,
                        r.timestamp.0.timestamp_millis(),
                        r.value.clone(),
                    )
                })
                .collect();
            expected.sort_by_key(|e| (e.1, e.2));
            let got: Vec<(String, i64, i64, i64, Option<String>)> = lean
                .iter()
                .map(|m| {
                    let value = m.value.as_ref().map(|v| match v {
                        Ok(b) => base64::engine::general_purpose::STANDARD.encode(b),
                        Err(_) => "<bad>".to_string(),
                    });
                    (m.topic.to_string(), m.partition, m.offset, m.timestamp_ms, value)
                })
                .collect();
            assert_eq!(got.len(), expected.len(), "{name}");
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!((&g.0, g.1, g.2, g.3), (&e.0, e.1, e.2, e.3), "{name}");
                if g.4.as_deref() != Some("<bad>") {
                    assert_eq!(g.4, e.4, "{name}");
                }
            }
        }
    }

    #[test]
    fn schedules_direct_calls_and_openfaas_requests_decode() {
        let sched = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1",
            "time": "2026-11-22T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {}});
        assert_eq!(decode_lambda(sched).unwrap(), Trigger::Schedule { time_s: 1_795_341_600.0 });
        assert!(matches!(decode_lambda(json!({"scenario": "balanced"})).unwrap(), Trigger::Direct(_)));
        let headers = |h: &str| match h {
            "x-topic" => Some("spark-metrics".to_string()),
            "x-kafka-offset" => Some("12".to_string()),
            _ => None,
        };
        let Trigger::Kafka(r) = decode_http(headers, b"{\"a\":1}", 5.0).unwrap() else { panic!() };
        assert_eq!((&*r[0].topic, r[0].offset, r[0].partition), ("spark-metrics", 12, -1));
        let cron = |h: &str| (h == "x-connector").then(|| "openfaas/cron-connector".to_string());
        assert_eq!(decode_http(cron, b"", 9.0).unwrap(), Trigger::Schedule { time_s: 9.0 });
        let err = decode_http(|_| None, b"{not json", 1.0).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }
}
