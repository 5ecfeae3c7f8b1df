//! Request ids: a client's sane `x-request-id` is kept, anything else replaced by
//! a random UUID v4 cut from a per-thread block (no allocation for most ids).

use http::header::{self, HeaderMap, HeaderValue};
use rand::Rng;

use crate::headers::X_REQUEST_ID;

/// Keeps a sane client-sent `x-request-id`, or sets a new random one.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One lookup of the name for both the check and the insert.
    match headers.entry(X_REQUEST_ID) {
        header::Entry::Occupied(mut sent) => {
            let v = sent.get();
            let ok = !v.is_empty()
                && v.len() <= 128
                && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
            if ok {
                return v.clone();
            }
            let id = new_request_id();
            sent.insert(id.clone());
            id
        }
        header::Entry::Vacant(slot) => {
            let id = new_request_id();
            slot.insert(id.clone());
            id
        }
    }
}

/// Ids made per allocation of a thread's id block.
const IDS_PER_BLOCK: usize = 64;
/// Length of a request id in UUID text form.
const ID_LEN: usize = 36;

/// Where a thread's request ids come from.
struct IdSource {
    /// A fast generator, seeded from the OS-seeded thread RNG: request ids must be
    /// unique, not unpredictable, and this path runs for every request.
    rng: rand::rngs::SmallRng,
    /// Ids are written here and split off, so that most ids cost no allocation
    /// of their own and cloning one is a reference count.
    block: bytes::BytesMut,
}

thread_local! {
    static IDS: std::cell::RefCell<IdSource> = std::cell::RefCell::new(IdSource {
        rng: rand::SeedableRng::from_rng(&mut rand::rng()),
        block: bytes::BytesMut::new(),
    });
}

/// A random 128-bit id in UUID v4 text form.
fn new_request_id() -> HeaderValue {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let n: u128 = ids.rng.random();
        let text = uuid_text(n);
        if ids.block.capacity() < ID_LEN {
            ids.block.reserve(ID_LEN * IDS_PER_BLOCK);
        }
        ids.block.extend_from_slice(&text);
        let id = ids.block.split().freeze();
        HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
    })
}

/// `n` as a version 4 UUID in its 36-character text form.
fn uuid_text(n: u128) -> [u8; ID_LEN] {
    // Set the version (4) and variant (10) bits.
    let n = (n & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; ID_LEN];
    // Two hex digits per byte, skipping the dashes at 8, 13, 18 and 23.
    let mut at = 0;
    for (i, byte) in n.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        if let Some(pair) = text.get_mut(at..at + 2) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xF)];
        }
        at += 2;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ensure_request_id(&mut h), "abc-123");
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id"));
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(&id.to_str().unwrap()[14..15], "4");
        assert_eq!(h[&X_REQUEST_ID], id);
        let ids: std::collections::HashSet<HeaderValue> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000, "made ids are distinct");
    }

    #[test]
    fn uuid_text_has_the_dashes_version_and_variant() {
        assert_eq!(&uuid_text(0), b"00000000-0000-4000-8000-000000000000");
        assert_eq!(
            &uuid_text(u128::MAX),
            b"ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        let n = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128;
        assert_eq!(&uuid_text(n), b"01234567-89ab-4def-8123-456789abcdef");
    }
}
