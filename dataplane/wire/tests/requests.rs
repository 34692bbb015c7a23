//! Whole requests and responses as real clients produce and expect them.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use riffle_wire::{Doc, Format, Value, cbor, json};

/// One PutRecords entry as a client holds it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    data: Bytes,
    partition_key: String,
    explicit_hash_key: Option<String>,
}

fn entries(count: usize, data_len: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry {
            data: (0..data_len).map(|j| (i * 31 + j) as u8).collect(),
            partition_key: format!("pk-{i}-é"),
            explicit_hash_key: (i % 3 == 0).then(|| format!("{}", u128::MAX / (i as u128 + 1))),
        })
        .collect()
}

/// The body boto3 sends for PutRecords.
fn put_records_json(stream: &str, entries: &[Entry]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut record = serde_json::json!({
                "Data": STANDARD.encode(&e.data),
                "PartitionKey": e.partition_key,
            });
            if let Some(key) = &e.explicit_hash_key {
                record["ExplicitHashKey"] = key.clone().into();
            }
            record
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "Records": records, "StreamName": stream })).unwrap()
}

/// The body the Java SDK sends for PutRecords in CBOR mode.
fn put_records_cbor(stream: &str, entries: &[Entry]) -> Vec<u8> {
    use ciborium::Value as C;
    let records = entries
        .iter()
        .map(|e| {
            // Members in the order serde_json (and so the JSON fixture) writes them.
            let mut record = vec![(C::Text("Data".into()), C::Bytes(e.data.to_vec()))];
            if let Some(key) = &e.explicit_hash_key {
                record.push((C::Text("ExplicitHashKey".into()), C::Text(key.clone())));
            }
            record.push((
                C::Text("PartitionKey".into()),
                C::Text(e.partition_key.clone()),
            ));
            C::Map(record)
        })
        .collect();
    let body = C::Map(vec![
        (C::Text("Records".into()), C::Array(records)),
        (C::Text("StreamName".into()), C::Text(stream.into())),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&body, &mut out).unwrap();
    out
}

/// What the PutRecords operation would read out of a request.
fn read_put_records(value: &Value, format: Format) -> (String, Vec<Entry>) {
    let doc = Doc::new(value, format).unwrap();
    let stream = doc.str_required("StreamName").unwrap().to_owned();
    let records = doc
        .list_required("Records")
        .unwrap()
        .iter()
        .map(|r| Entry {
            data: r.blob_required("Data").unwrap(),
            partition_key: r.str_required("PartitionKey").unwrap().to_owned(),
            explicit_hash_key: r.str_opt("ExplicitHashKey").unwrap().map(str::to_owned),
        })
        .collect();
    (stream, records)
}

/// Replaces base64 text at `Records[*].Data` with the bytes it stands for.
fn with_decoded_blobs(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Map(members) = &mut value {
        for (key, member) in members.iter_mut() {
            if key == "Records"
                && let Value::List(records) = member
            {
                for record in records {
                    if let Value::Map(fields) = record {
                        for (name, field) in fields.iter_mut() {
                            if name == "Data"
                                && let Value::Str(text) = field
                            {
                                *field =
                                    Value::Bytes(STANDARD.decode(text.as_bytes()).unwrap().into());
                            }
                        }
                    }
                }
            }
        }
    }
    value
}

#[test]
fn put_records_reads_the_same_from_json_and_cbor() {
    let sent = entries(20, 100);
    let from_json = json::decode(&put_records_json("orders", &sent)).unwrap();
    let from_cbor = cbor::decode(&put_records_cbor("orders", &sent)).unwrap();

    // The same document once JSON's base64 text is read as the blob it encodes.
    assert_eq!(with_decoded_blobs(&from_json), from_cbor);

    let json_read = read_put_records(&from_json, Format::Json);
    let cbor_read = read_put_records(&from_cbor, Format::Cbor);
    assert_eq!(json_read, ("orders".to_owned(), sent.clone()));
    assert_eq!(cbor_read, json_read);

    let shared = cbor::decode_shared(&Bytes::from(put_records_cbor("orders", &sent))).unwrap();
    assert_eq!(shared, from_cbor);
}

#[test]
fn get_shard_iterator_timestamps_in_both_formats() {
    let json_body = br#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1700000000.123}"#;
    let v = json::decode(json_body).unwrap();
    let doc = Doc::new(&v, Format::Json).unwrap();
    assert_eq!(
        doc.timestamp_required("Timestamp").unwrap(),
        1_700_000_000.123
    );

    // The Java SDK's encoding: tag 1 over epoch milliseconds.
    use ciborium::Value as C;
    let body = C::Map(vec![
        (C::Text("StreamName".into()), C::Text("s".into())),
        (
            C::Text("Timestamp".into()),
            C::Tag(1, Box::new(C::Integer(1_700_000_000_123i64.into()))),
        ),
    ]);
    let mut cbor_body = Vec::new();
    ciborium::into_writer(&body, &mut cbor_body).unwrap();
    let v = cbor::decode(&cbor_body).unwrap();
    let doc = Doc::new(&v, Format::Cbor).unwrap();
    assert_eq!(
        doc.timestamp_required("Timestamp").unwrap(),
        1_700_000_000.123
    );
}

fn get_records_response(records: usize, data_len: usize) -> Value {
    let data = Bytes::from(vec![0xab; data_len]);
    Value::map()
        .with(
            "Records",
            (0..records)
                .map(|i| {
                    Value::map_with_capacity(4)
                        .with("SequenceNumber", format!("{:056}", i))
                        .with(
                            "ApproximateArrivalTimestamp",
                            Value::timestamp_millis(1_700_000_000_000 + i as i64),
                        )
                        .with("Data", data.clone())
                        .with("PartitionKey", "key")
                })
                .collect::<Value>(),
        )
        .with("NextShardIterator", "AAAAAAAAAAE=")
        .with("MillisBehindLatest", 0)
        .build()
}

#[test]
fn get_records_response_as_clients_read_it() {
    let response = get_records_response(2, 3);
    let text: serde_json::Value = serde_json::from_slice(&json::encode(&response)).unwrap();
    assert_eq!(text["Records"][1]["Data"], "q6ur");
    assert_eq!(
        text["Records"][1]["ApproximateArrivalTimestamp"].as_f64(),
        Some(1_700_000_000.001)
    );
    assert_eq!(text["MillisBehindLatest"], 0);

    let back: ciborium::Value = ciborium::from_reader(&cbor::encode(&response)[..]).unwrap();
    let record = &back.as_map().unwrap()[0].1.as_array().unwrap()[1];
    let timestamp = &record.as_map().unwrap()[1].1;
    assert_eq!(
        timestamp,
        &ciborium::Value::Tag(
            1,
            Box::new(ciborium::Value::Integer(1_700_000_000_001i64.into()))
        )
    );
}

#[test]
fn large_bodies_round_trip_within_budget() {
    // 500 records of ~10 KiB: a 5 MiB PutRecords request as base64 JSON.
    let sent = entries(500, 10_000);
    let body = put_records_json("big", &sent);
    assert!(body.len() > 6_000_000);
    let start = Instant::now();
    let value = json::decode(&body).unwrap();
    let (_, read) = read_put_records(&value, Format::Json);
    let decode_time = start.elapsed();
    assert_eq!(read, sent);

    // A 10 MiB GetRecords response.
    let response = get_records_response(1_000, 10 * 1024);
    let start = Instant::now();
    let encoded = json::encode(&response);
    let encode_time = start.elapsed();
    assert!(encoded.len() > 13_000_000);
    let back = json::decode(&encoded).unwrap();
    let doc = Doc::new(&back, Format::Json).unwrap();
    let records = doc.list_required("Records").unwrap();
    assert_eq!(records.len(), 1_000);
    assert_eq!(records[999].blob_required("Data").unwrap().len(), 10 * 1024);
    // Generous bounds that hold even unoptimised; they catch accidental quadratic work.
    assert!(decode_time.as_secs() < 5, "decode took {decode_time:?}");
    assert!(encode_time.as_secs() < 5, "encode took {encode_time:?}");
    eprintln!(
        "5 MiB PutRecords decode+read: {decode_time:?}; 10 MiB GetRecords encode: {encode_time:?}"
    );
}
