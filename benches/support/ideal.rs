//! The ideal responder's work per request, one copy for `loadgen respond` (examples/loadgen.rs) and the baseline of
//! `cargo bench --bench handle`: find the envelope's raw `id` and splice it into the pre-serialized reply body.

use connector_scripts::wire::{frame_response, Framing};

/// The raw JSON of the envelope's `id`, without parsing anything else.
pub fn id_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    let e: Id<'_> = serde_json::from_slice(payload).ok()?;
    e.id.map(|r| r.get().to_string())
}

/// The NestJS reply to `request`: `body` framed with the request's id; `None` for a request without one.
pub fn reply(body: &[u8], request: &[u8]) -> Option<Vec<u8>> {
    let id = id_of(request)?;
    let mut out = Vec::with_capacity(body.len() + 64);
    frame_response(&Framing::Nest { id }, body, &mut out);
    Some(out)
}
