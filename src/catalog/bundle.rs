//! A variant's compiled scripts, its revision, and its reply pre-serialized so serving costs a memcpy.

use super::platforms::CompileOptions;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::SystemTime;

/// A signed manifest, as shipped: made by [`crate::signing`], carried by the bundle it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The manifest JSON text: the signed bytes.
    pub manifest: String,
    /// Base64 Ed25519 signature over `manifest`.
    pub signature: String,
    /// Which key signed it.
    pub key_id: String,
    /// The revision notice (`{"kind":"revision",platform,variant,revision,signedAt}`): the signed bytes of the
    /// small retained message that tells devices a revision exists ([`crate::signing::notice`]).
    pub notice: String,
    /// Base64 Ed25519 signature over `notice`.
    pub notice_signature: String,
}

/// One compiled connector as delivered to apps.
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    /// Connector name (`fleet/tracking`).
    pub name: String,
    /// The JavaScript.
    pub code: Arc<str>,
    /// Hex SHA-256 of `code`, for integrity checks and caching on the device.
    pub sha256: String,
    /// Source map JSON, when the variant asks for them.
    #[serde(rename = "sourceMap", skip_serializing_if = "Option::is_none")]
    pub source_map: Option<Arc<str>>,
}

/// The compiled, ready-to-send form of one variant.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Platform name.
    pub platform: String,
    /// Variant name.
    pub variant: String,
    /// The variant's version range, as written.
    pub versions: String,
    /// Compile options.
    pub options: CompileOptions,
    /// Scripts ordered by name.
    pub scripts: Vec<Script>,
    /// Hash over the options and the scripts: equal revisions mean identical replies.
    pub revision: String,
    /// When this revision was first built (kept across reloads that leave it unchanged): the manifest's
    /// `signedAt`, so that it only grows with new content.
    pub issued_at: SystemTime,
    /// The signed manifest, once the service signed the bundle (`serve --signing-key`).
    pub signed: Option<Signed>,
    /// `stable` or `candidate` in replies, when releases are managed (`--release-mode manual`).
    pub channel: Option<&'static str>,
    /// `{"platform":…,"version":` — the app version goes after it.
    head: Vec<u8>,
    /// `,"variant":…,"revision":…[,"manifest":…,"signature":…,"keyId":…],"connectors":[`.
    middle: Vec<u8>,
    /// `middle` with the signed manifest gzipped (`"manifestGz"`), for `accept: ["gzip"]`.
    middle_gz: Vec<u8>,
    /// Each script's JSON object, in `scripts` order.
    script_json: Vec<Vec<u8>>,
    /// All script objects joined by commas.
    all_scripts: Vec<u8>,
    /// Each script's JSON object with its code (and source map) gzipped and in base64, built once per revision.
    script_gzip: Vec<Vec<u8>>,
}

/// How much of a bundle a reply carries, and in which encoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Only these scripts (indices into `scripts`); `None`: all of them.
    pub only: Option<&'a [usize]>,
    /// A delta: the reply says so and lists the connectors the device holds that are gone.
    pub removed: Option<&'a [&'a str]>,
    /// Code, source maps and the signed manifest gzipped, in base64 (`codeGz`, `sourceMapGz`, `manifestGz`).
    pub gzip: bool,
}

/// One script with its code gzipped, as the `accept: ["gzip"]` replies carry it.
#[derive(Serialize)]
struct GzipScript<'a> {
    name: &'a str,
    sha256: &'a str,
    #[serde(rename = "codeGz")]
    code_gz: String,
    #[serde(rename = "sourceMapGz", skip_serializing_if = "Option::is_none")]
    source_map_gz: Option<String>,
}

/// `text` gzipped (level 9: built once per revision, sent to every device), in base64.
fn gzip_base64(text: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 3), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap_or_default())
}

/// Most bytes a gzipped field may inflate to: what a reply may carry at all (a bomb stops here).
pub const MAX_INFLATED: u64 = 64 << 20;

/// The text inside a base64 gzip field (`codeGz`, `manifestGz`); `None` when it does not decode, is not UTF-8, or
/// inflates past [`MAX_INFLATED`].
pub fn gunzip_base64(b64: &str) -> Option<String> {
    use base64::Engine;
    use std::io::Read;
    let gz = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut text = String::new();
    let mut inflated = flate2::read::GzDecoder::new(&gz[..]).take(MAX_INFLATED + 1);
    inflated.read_to_string(&mut text).ok()?;
    (text.len() as u64 <= MAX_INFLATED).then_some(text)
}

/// The code of one script object of a reply, plain (`code`) or gzipped (`codeGz`); `None` when neither decodes.
pub fn code_of(script: &serde_json::Value) -> Option<String> {
    match script["code"].as_str() {
        Some(code) => Some(code.to_string()),
        None => gunzip_base64(script["codeGz"].as_str()?),
    }
}

fn gzip_json(s: &Script) -> Vec<u8> {
    let g = GzipScript {
        name: &s.name,
        sha256: &s.sha256,
        code_gz: gzip_base64(&s.code),
        source_map_gz: s.source_map.as_deref().map(gzip_base64),
    };
    serde_json::to_vec(&g).unwrap_or_default()
}

/// A source map for the same code with `lines` lines put in front (the polyfills): each line is one `;` more at
/// the start of `mappings`. A map that is not JSON (never produced here) is returned as it is.
pub fn shift_source_map(map: &str, lines: usize) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(map) else {
        return map.to_string();
    };
    if let Some(serde_json::Value::String(m)) = doc.get_mut("mappings") {
        m.insert_str(0, &";".repeat(lines));
    }
    doc.to_string()
}

/// `parts` joined by commas, appended to `out`.
fn join_into<'a>(out: &mut Vec<u8>, parts: impl Iterator<Item = &'a Vec<u8>>) {
    for (n, part) in parts.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part);
    }
}

fn json(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The reply part between the version and the scripts: plain, and with the signed manifest gzipped.
fn middle(variant: &str, revision: &str, signed: Option<&Signed>, channel: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let mut m = format!(",\"variant\":{},\"revision\":{}", json(variant), json(revision));
    if let Some(c) = channel {
        m.push_str(&format!(",\"channel\":{}", json(c)));
    }
    let mut gz = m.clone();
    if let Some(s) = signed {
        let tail = format!(",\"signature\":{},\"keyId\":{}", json(&s.signature), json(&s.key_id));
        m.push_str(&format!(",\"manifest\":{}{tail}", json(&s.manifest)));
        gz.push_str(&format!(",\"manifestGz\":{}{tail}", json(&gzip_base64(&s.manifest))));
    }
    m.push_str(",\"connectors\":[");
    gz.push_str(",\"connectors\":[");
    (m.into_bytes(), gz.into_bytes())
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl Bundle {
    /// Builds the bundle, its revision and its pre-serialized reply parts.
    pub fn new(
        platform: &str,
        variant: &str,
        versions: &str,
        options: CompileOptions,
        mut scripts: Vec<Script>,
    ) -> Bundle {
        scripts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut h = Sha256::new();
        h.update(options.to_string().as_bytes());
        for s in &scripts {
            h.update([0]);
            h.update(s.name.as_bytes());
            h.update([0]);
            h.update(s.sha256.as_bytes());
            if let Some(map) = &s.source_map {
                h.update(Sha256::digest(map.as_bytes()));
            }
        }
        // 64 bits are plenty to tell revisions of one variant apart and keep not-modified requests small.
        let revision = hex(&h.finalize()[..8]);
        let head = format!("{{\"platform\":{},\"version\":", json(platform)).into_bytes();
        let (middle, middle_gz) = middle(variant, &revision, None, None);
        let script_json: Vec<Vec<u8>> = scripts.iter().map(|s| serde_json::to_vec(s).unwrap_or_default()).collect();
        let all_scripts = script_json.join(&b","[..]);
        let script_gzip = scripts.iter().map(gzip_json).collect();
        Bundle {
            platform: platform.to_string(),
            variant: variant.to_string(),
            versions: versions.to_string(),
            options,
            scripts,
            revision,
            issued_at: SystemTime::now(),
            signed: None,
            channel: None,
            head,
            middle,
            middle_gz,
            script_json,
            all_scripts,
            script_gzip,
        }
    }

    /// The same bundle with its signed manifest in every reply.
    pub fn with_signature(&self, signed: Signed) -> Bundle {
        let mut b = self.clone();
        (b.middle, b.middle_gz) = middle(&b.variant, &b.revision, Some(&signed), b.channel);
        b.signed = Some(signed);
        b
    }

    /// The same bundle, its replies saying which release channel they come from.
    pub fn with_channel(&self, channel: &'static str) -> Bundle {
        let mut b = self.clone();
        (b.middle, b.middle_gz) = middle(&b.variant, &b.revision, b.signed.as_ref(), Some(channel));
        b.channel = Some(channel);
        b
    }

    /// The bundle without the connectors in `disabled` (the kill switch): a new revision, issued at `issued_at`.
    pub fn without(&self, disabled: &std::collections::BTreeSet<String>, issued_at: SystemTime) -> Bundle {
        let scripts = self.scripts.iter().filter(|s| !disabled.contains(&s.name)).cloned().collect();
        let mut b = Bundle::new(&self.platform, &self.variant, &self.versions, self.options, scripts);
        b.issued_at = issued_at;
        b
    }

    /// A script by name.
    pub fn script(&self, name: &str) -> Option<&Script> {
        self.script_index(name).map(|i| &self.scripts[i])
    }

    /// Index of a script by name.
    pub fn script_index(&self, name: &str) -> Option<usize> {
        self.scripts.binary_search_by(|s| s.name.as_str().cmp(name)).ok()
    }

    /// Appends the reply object `{platform, version, variant, revision, connectors}` to `out`, with every script
    /// or only those at `only` (indices into `scripts`). `version` is the normalized app version.
    pub fn write_reply(&self, version: &str, only: Option<&[usize]>, out: &mut Vec<u8>) {
        self.write_selection(version, Selection { only, ..Selection::default() }, out);
    }

    /// Appends the reply object for `selection`: [`Bundle::write_reply`], plus `"delta":true` and `removed` for a
    /// delta, and gzipped code fields and signed manifest when asked for. Every part is pre-serialized: a memcpy
    /// per script.
    pub fn write_selection(&self, version: &str, selection: Selection<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        // A normalized semver string holds only [0-9A-Za-z.+-]: no escaping needed, but stay safe.
        let _ = serde_json::to_writer(&mut *out, version);
        out.extend_from_slice(if selection.gzip { &self.middle_gz } else { &self.middle });
        let parts = if selection.gzip { &self.script_gzip } else { &self.script_json };
        match selection.only {
            None if !selection.gzip => out.extend_from_slice(&self.all_scripts),
            None => join_into(out, parts.iter()),
            Some(indices) => join_into(out, indices.iter().map(|&i| &parts[i])),
        }
        out.push(b']');
        if let Some(removed) = selection.removed {
            out.extend_from_slice(b",\"delta\":true,\"removed\":");
            let _ = serde_json::to_writer(&mut *out, removed);
        }
        out.push(b'}');
    }

    /// What a device holding `have` (connector name → hex SHA-256) lacks: the indices of the scripts it does not
    /// have in this exact form, and the names it holds that this revision no longer has.
    pub fn delta<'h>(&self, have: &'h std::collections::BTreeMap<String, String>) -> (Vec<usize>, Vec<&'h str>) {
        let changed = (0..self.scripts.len())
            .filter(|&i| have.get(&self.scripts[i].name) != Some(&self.scripts[i].sha256))
            .collect();
        let removed = have.keys().filter(|name| self.script_index(name).is_none()).map(String::as_str).collect();
        (changed, removed)
    }

    /// Size of the full reply, for capacity hints.
    ///
    /// Gzipped or partial replies are smaller.
    pub fn reply_len_hint(&self) -> usize {
        self.head.len() + self.middle.len() + self.all_scripts.len() + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::platforms::{ModuleFormat, Target};

    fn script(name: &str, code: &str) -> Script {
        Script { name: name.into(), code: code.into(), sha256: sha256_hex(code.as_bytes()), source_map: None }
    }

    const OPTS: CompileOptions =
        CompileOptions { target: Target::Es2017, module: ModuleFormat::Esm, minify: false, source_maps: false };

    #[test]
    fn reply_is_valid_json_in_the_documented_shape() {
        let b = Bundle::new("ios", "current", ">=2", OPTS, vec![script("b", "let b = \"\\n\";"), script("a", "1")]);
        let mut out = Vec::new();
        b.write_reply("2.4.1", None, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["platform"], "ios");
        assert_eq!(v["version"], "2.4.1");
        assert_eq!(v["variant"], "current");
        assert_eq!(v["revision"], b.revision.as_str());
        assert_eq!(v["connectors"][0]["name"], "a");
        assert_eq!(v["connectors"][1]["code"], "let b = \"\\n\";");
        assert_eq!(v["connectors"][1]["sha256"], sha256_hex(b"let b = \"\\n\";"));
        assert!(v["connectors"][0].get("sourceMap").is_none());
        let mut only = Vec::new();
        b.write_reply("2.4.1", Some(&[b.script_index("b").unwrap()]), &mut only);
        let v: serde_json::Value = serde_json::from_slice(&only).unwrap();
        assert_eq!(v["connectors"].as_array().unwrap().len(), 1);
        assert_eq!(v["connectors"][0]["name"], "b");
    }

    #[test]
    fn a_delta_carries_what_changed_and_names_what_went_and_gzip_round_trips() {
        let b = Bundle::new("ios", "v", "*", OPTS, vec![script("a", "1"), script("b", &"x".repeat(2000))]);
        let have: std::collections::BTreeMap<String, String> = [
            ("a".to_string(), sha256_hex(b"1")),
            ("b".to_string(), "0".repeat(64)),
            ("gone".to_string(), "f".repeat(64)),
        ]
        .into();
        let (changed, removed) = b.delta(&have);
        assert_eq!((changed.clone(), removed.clone()), (vec![1], vec!["gone"]));
        let mut out = Vec::new();
        b.write_selection("1.0.0", Selection { only: Some(&changed), removed: Some(&removed), gzip: true }, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["delta"].clone(), v["removed"].clone()), (serde_json::json!(true), serde_json::json!(["gone"])));
        let only = &v["connectors"].as_array().unwrap()[..];
        assert_eq!((only.len(), only[0]["name"].as_str()), (1, Some("b")));
        assert!(only[0].get("code").is_none());
        assert_eq!(code_of(&only[0]).as_deref(), Some("x".repeat(2000).as_str()));
        assert!(only[0]["codeGz"].as_str().unwrap().len() < 100, "2000 repeated bytes gzip to less");
        // Without a selection the reply is exactly the full one.
        let (mut full, mut plain) = (Vec::new(), Vec::new());
        b.write_reply("1.0.0", None, &mut full);
        b.write_selection("1.0.0", Selection::default(), &mut plain);
        assert_eq!(full, plain);
    }

    #[test]
    fn revision_changes_with_content_and_options_only() {
        let a = Bundle::new("ios", "v", "*", OPTS, vec![script("a", "1")]);
        let same = Bundle::new("ios", "v", "*", OPTS, vec![script("a", "1")]);
        let code = Bundle::new("ios", "v", "*", OPTS, vec![script("a", "2")]);
        let opts = Bundle::new("ios", "v", "*", CompileOptions { minify: true, ..OPTS }, vec![script("a", "1")]);
        assert_eq!(a.revision, same.revision);
        assert_ne!(a.revision, code.revision);
        assert_ne!(a.revision, opts.revision);
        assert_eq!(a.revision.len(), 16);
    }
}
