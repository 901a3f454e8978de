//! Bytes per update (issue #26): a device that names what it holds gets only what changed, gzipped if it asks,
//! and still verifies its complete new set against the signed manifest; old requests get the full bundle.

use crate::common::mqtt::{config, nest, serve_with, Client, TIMEOUT};
use crate::common::{eventually, Mosquitto, TempCatalog};
use connector_scripts::catalog::bundle::{code_of, sha256_hex};
use connector_scripts::signing::{verify_manifest, verify_reply, TrustedKeys};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The reply body to `data` and the size of the whole message as the broker carried it.
async fn ask(app: &mut Client, device: &str, data: Value, id: &str) -> (Value, usize) {
    app.publish(&format!("getConnectors/{device}"), nest(data, id)).await;
    loop {
        let m = app.recv().await;
        let v = m.json();
        if v["id"] == id {
            return (v["response"].clone(), m.payload.len());
        }
    }
}

/// Connector name → code of a reply (plain or gzipped).
fn scripts(body: &Value) -> BTreeMap<String, String> {
    let list = body["connectors"].as_array().expect("connectors");
    list.iter().map(|s| (s["name"].as_str().unwrap().to_string(), code_of(s).expect("code decodes"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_verifies_against_the_signed_manifest_and_rebuilds_the_full_set() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public, _) = crate::signing::keygen(keys.path(), "prod");
    let trusted = TrustedKeys::load(&[public]).unwrap();
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let service = serve_with(config(&catalog, &mosquitto.url(), &["--signing-key", private.to_str().unwrap()])).await;
    let mut app = Client::v4(mosquitto.port, "phone").await;
    app.subscribe("getConnectors/phone/reply").await;
    let ios = json!({"platform": "ios", "version": "3.1.0"});
    let (v1, _) = ask(&mut app, "phone", ios.clone(), "v1").await;
    let held = scripts(&v1);
    let have: Map<String, Value> = held.iter().map(|(n, c)| (n.clone(), json!(sha256_hex(c.as_bytes())))).collect();

    // One connector of the variant changes.
    let path = catalog.snippets().join("smart-home/thermostat.ts");
    let text = std::fs::read_to_string(&path).unwrap();
    catalog.snippet("smart-home/thermostat.ts", format!("{text}\nexport const saved = 2;\n"));
    let old = v1["revision"].as_str().unwrap().to_string();
    let mut n = 0;
    let full = eventually(TIMEOUT, "the new revision", || {
        n += 1;
        let (body, size) = crate::common::process::block_on(ask(&mut app, "phone", ios.clone(), &format!("f{n}")));
        (body["revision"] != old.as_str()).then_some((body, size))
    })
    .await;
    let (full, full_size) = full;
    assert!(full.get("delta").is_none(), "an old-style request gets the full bundle");

    for accept in [json!(null), json!(["gzip"])] {
        let mut data = ios.clone();
        data["have"] = Value::Object(have.clone());
        data["accept"] = accept.clone();
        let (delta, size) = ask(&mut app, "phone", data, &format!("d-{accept}")).await;
        assert_eq!(delta["delta"], true, "{delta}");
        assert_eq!(delta["removed"], json!([]));
        let sent = scripts(&delta);
        assert_eq!(sent.keys().collect::<Vec<_>>(), ["smart-home/thermostat"], "only what changed");
        // Every script sent checks against the signed manifest (gzipped code as what it decodes to) ...
        let verified = verify_reply(&delta, &trusted).expect("the delta verifies");
        let (_, manifest) = verify_manifest(&delta, &trusted).unwrap();
        assert_eq!(verified.manifest.revision, full["revision"].as_str().unwrap());
        // ... and the device's complete new set, its own copies plus the delta, is exactly the full bundle's.
        let rebuilt: BTreeMap<String, String> = manifest
            .connectors
            .iter()
            .map(|e| {
                let code = sent.get(&e.name).or_else(|| held.get(&e.name)).expect("every connector at hand").clone();
                assert_eq!(sha256_hex(code.as_bytes()), e.sha256, "{}", e.name);
                (e.name.clone(), code)
            })
            .collect();
        assert_eq!(rebuilt, scripts(&full));
        println!(
            "full {full_size} bytes, delta (accept {accept}) {size} bytes: {:.1}x",
            full_size as f64 / size as f64
        );
        assert!(size * 3 < full_size, "delta {size} bytes vs full {full_size}");
    }

    // Hashes it does not know (and a connector that is gone): everything, named as removed.
    let mut data = ios.clone();
    let mut unknown: Map<String, Value> = held.keys().map(|n| (n.clone(), json!("0".repeat(64)))).collect();
    unknown.insert("retired/old".into(), json!("1".repeat(64)));
    data["have"] = Value::Object(unknown);
    let (body, _) = ask(&mut app, "phone", data, "unknown").await;
    assert_eq!(scripts(&body), scripts(&full), "unknown hashes get the full set");
    assert_eq!(body["removed"], json!(["retired/old"]));
    verify_reply(&body, &trusted).unwrap();
    service.shutdown().await.unwrap();
}
