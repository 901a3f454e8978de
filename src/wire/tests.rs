//! Unit tests of `wire/mod.rs`.

use super::*;

fn dec(payload: &str, rt: bool) -> Decoded {
    decode(payload.as_bytes(), rt, &Limits::default())
}

fn data(platform: &str, version: &str) -> RequestData {
    RequestData {
        platform: platform.into(),
        version: version.into(),
        connectors: None,
        revision: None,
        device_id: None,
        have: None,
        accept: None,
    }
}

#[test]
fn decodes_nest_envelopes_events_and_bare_requests() {
    let nest = r#"{"pattern":"getConnectors","data":{"platform":"ios","version":"3.1.0"},"id":"abc"}"#;
    assert_eq!(
        dec(nest, false),
        Decoded::Request { framing: Framing::Nest { id: "\"abc\"".into() }, data: Ok(data("ios", "3.1.0")) }
    );
    // Response topic on a Nest envelope: still Nest framing (the client speaks Nest).
    assert!(matches!(dec(nest, true), Decoded::Request { framing: Framing::Nest { .. }, .. }));
    // No id: an event.
    assert_eq!(dec(r#"{"pattern":"getConnectors","data":{"platform":"ios","version":"3"}}"#, false), Decoded::Event);
    // External payload (neither pattern nor data): event without a response topic, bare request with one.
    assert_eq!(dec(r#"{"platform":"ios","version":"3"}"#, false), Decoded::Event);
    assert_eq!(
        dec(r#"{"platform":"ios","version":"3"}"#, true),
        Decoded::Request { framing: Framing::Bare, data: Ok(data("ios", "3")) }
    );
    // Numeric ids are echoed as numbers.
    let n = r#"{"pattern":"x","data":{"platform":"a","version":"1"},"id":42}"#;
    assert!(matches!(dec(n, false), Decoded::Request { framing: Framing::Nest { id }, .. } if id == "42"));
}

#[test]
fn well_formed_requests_decode_as_the_checked_path_would() {
    // Valid `data` takes the one-pass path; the same envelope with `data` first goes through it too. Every id kind,
    // with and without a response topic, must come out as the field-by-field rules above say.
    let body = r#"{"platform":"ios","version":"3","deviceId":"d1","extra":[1,{"x":null}]}"#;
    let mut want_data = data("ios", "3");
    want_data.device_id = Some("d1".into());
    let nest = |id: &str| Decoded::Request { framing: Framing::Nest { id: id.into() }, data: Ok(want_data.clone()) };
    for rt in [false, true] {
        // Strings and numbers are echoed as they came.
        for id in [r#""a b""#, "-7.5e3", "0"] {
            let envelope = format!(r#"{{"pattern":"getConnectors","data":{body},"id":{id}}}"#);
            assert_eq!(dec(&envelope, rt), nest(id), "{envelope}");
            let data_first = format!(r#"{{"data":{body},"id":{id},"pattern":{{"cmd":"x"}}}}"#);
            assert_eq!(dec(&data_first, rt), nest(id), "{data_first}");
        }
        for id in ["true", "[1]", r#"{"x":1}"#] {
            let envelope = format!(r#"{{"pattern":"p","data":{body},"id":{id}}}"#);
            match (dec(&envelope, rt), rt) {
                (Decoded::Request { framing: Framing::Bare, data: Err(e) }, true) | (Decoded::Dropped(e), false) => {
                    assert!(e.message.contains("`id` must be a string"), "{envelope}: {}", e.message)
                }
                (other, _) => panic!("{envelope}: {other:?}"),
            }
        }
        // No id (or a null one: NestJS sends none): an event, or a bare request when there is a response topic
        // to answer on.
        let want =
            if rt { Decoded::Request { framing: Framing::Bare, data: Ok(want_data.clone()) } } else { Decoded::Event };
        for id in ["", r#","id":null"#] {
            let no_id = format!(r#"{{"pattern":"p","data":{body}{id}}}"#);
            assert_eq!(dec(&no_id, rt), want, "{no_id}");
        }
    }
    // Field limits hold on this path too.
    let limits = Limits { max_field_len: 4, ..Limits::default() };
    let long = r#"{"pattern":"p","data":{"platform":"android","version":"3"},"id":"i"}"#;
    match decode(long.as_bytes(), false, &limits) {
        Decoded::Request { data: Err(e), .. } => assert!(e.message.contains("`platform` is longer"), "{}", e.message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_requests_are_typed() {
    let cases = [
        (r#"{"pattern":"p","data":{"platform":1,"version":"3"},"id":"i"}"#, "request data must be"),
        (r#"{"pattern":"p","data":{"platform":"ios"},"id":"i"}"#, "missing field `version`"),
        (r#"{"pattern":"p","data":"ios","id":"i"}"#, "request data must be"),
        (r#"{"pattern":"p","id":"i"}"#, "has no `data`"),
        (r#"{"pattern":"p","data":{"platform":"ios","version":"3","connectors":"a"},"id":"i"}"#, "request data"),
    ];
    for (payload, needle) in cases {
        match dec(payload, false) {
            Decoded::Request { data: Err(e), framing: Framing::Nest { .. } } => {
                assert_eq!(e.code, ErrorCode::BadRequest);
                assert!(e.message.contains(needle), "{payload}: {}", e.message);
            }
            other => panic!("{payload}: {other:?}"),
        }
    }
    // Not JSON: nobody to answer unless a response topic was given, or a NestJS id can still be read.
    assert!(matches!(dec("garbage", false), Decoded::Dropped(_)));
    let trailing_comma = r#"{"pattern":"getConnectors","data":{"platform":"ios",},"id":"m1"}"#;
    match dec(trailing_comma, false) {
        Decoded::Request { framing: Framing::Nest { id }, data: Err(e) } => {
            assert_eq!(id, "\"m1\"");
            assert_eq!(e.code, ErrorCode::BadRequest);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(dec(r#"{"data":{,"id":"a\"b"}"#, false), Decoded::Dropped(_)), "escaped ids are not guessed");
    assert!(matches!(dec("[1,2]", true), Decoded::Request { framing: Framing::Bare, data: Err(_) }));
    assert!(matches!(dec(r#"{"id":{"x":1},"data":{}}"#, false), Decoded::Dropped(_)));
}

#[test]
fn limits_are_enforced_but_the_caller_is_told() {
    let limits = Limits { max_request_bytes: 100, max_field_len: 8, max_connectors: 2, ..Limits::default() };
    let big = format!(r#"{{"pattern":"p","data":{{"platform":"{}","version":"1"}},"id":"i"}}"#, "x".repeat(200));
    match decode(big.as_bytes(), false, &limits) {
        Decoded::Request { data: Err(e), .. } => {
            assert!(e.message.contains("over the 100 byte limit"), "{}", e.message)
        }
        other => panic!("{other:?}"),
    }
    let long = r#"{"pattern":"p","data":{"platform":"abcdefghij","version":"1"},"id":"i"}"#;
    assert!(
        matches!(decode(long.as_bytes(), false, &limits), Decoded::Request { data: Err(e), .. } if e.message.contains("`platform` is longer"))
    );
    let many = r#"{"data":{"platform":"a","version":"1","connectors":["a","b","c"]},"id":"i"}"#;
    assert!(
        matches!(decode(many.as_bytes(), false, &limits), Decoded::Request { data: Err(e), .. } if e.message.contains("at most 2"))
    );
    // Oversized: never parsed; an id at either end is still answered, none means refused.
    let huge_numeric = format!(r#"{{"id":1.{}}}"#, "0".repeat(200));
    assert_eq!(decode(huge_numeric.as_bytes(), false, &limits), Decoded::Refused(Refusal::TooLarge));
    let id_first = format!(r#"{{"id":"first","data":"{}"}}"#, "é".repeat(200));
    assert!(matches!(decode(id_first.as_bytes(), false, &limits),
        Decoded::Request { framing: Framing::Nest { id }, data: Err(_) } if id == "\"first\""));
    // Ids are echoed, so numbers are bounded like strings.
    let long_number = format!(r#"{{"data":{{"platform":"a","version":"1"}},"id":{}}}"#, "9".repeat(300));
    assert_eq!(decode(long_number.as_bytes(), false, &Limits::default()), Decoded::Refused(Refusal::IdTooLong));
    assert!(matches!(
        decode(long_number.as_bytes(), true, &Limits::default()),
        Decoded::Request { framing: Framing::Bare, data: Err(e) } if e.message.contains("`id` is longer")
    ));
    let deep = format!(r#"{{"data":{}1{},"id":"i"}}"#, "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        decode(deep.as_bytes(), false, &Limits::default()),
        Decoded::Dropped(_) | Decoded::Request { data: Err(_), .. }
    ));
}

mod fuzz {
    //! Property tests: decoding never panics, and what carries a usable id is always answerable.
    use super::super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,12}", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), rt in any::<bool>()) {
            let _ = decode(&bytes, rt, &Limits::default());
        }

        #[test]
        fn any_envelope_with_a_string_id_is_answered(data in json_value(), id in "[a-z0-9]{1,21}") {
            let payload = serde_json::json!({"pattern": "getConnectors", "data": data, "id": id}).to_string();
            match decode(payload.as_bytes(), false, &Limits::default()) {
                Decoded::Request { framing: Framing::Nest { id: got }, data } => {
                    prop_assert_eq!(got, format!("\"{id}\""));
                    if let Err(e) = data {
                        prop_assert_eq!(e.code, ErrorCode::BadRequest);
                        prop_assert!(e.message.len() < 400);
                    }
                }
                other => prop_assert!(false, "not answerable: {:?}", other),
            }
        }

        #[test]
        fn bare_requests_with_a_response_topic_are_answered(data in json_value()) {
            let payload = data.to_string();
            let decoded = decode(payload.as_bytes(), true, &Limits::default());
            prop_assert!(matches!(decoded, Decoded::Request { .. }), "{:?}", decoded);
        }
    }
}
