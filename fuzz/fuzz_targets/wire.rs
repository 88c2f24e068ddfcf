//! `antre::wire`, what antre reads from an origin: a response head and a
//! chunked body, on arbitrary bytes. They never panic; a head read takes
//! exactly its own bytes out of the buffer, and a chunked body decodes the
//! same whichever pieces its bytes arrive in.
//!
//! Input: the bytes an origin sent; the first byte also picks how many
//! bytes arrive at a time for the chunked decoder.

#![no_main]

use antre::wire::{read_response_head, Chunked, Decoded};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// The body and what followed it, or `None` when the bytes are not one
/// whole chunked body; decoded with `step` bytes arriving at a time.
fn dechunk(input: &[u8], step: usize) -> Option<(Vec<u8>, usize)> {
    let mut decoder = Chunked::default();
    let mut buf = BytesMut::new();
    let (mut body, mut fed) = (Vec::new(), 0);
    loop {
        match decoder.decode(&mut buf).ok()? {
            Some(Decoded::Data(data)) => {
                assert!(!data.is_empty(), "an empty piece of body");
                body.extend_from_slice(&data);
            }
            Some(Decoded::End) => return Some((body, buf.len() + input.len() - fed)),
            None if fed < input.len() => {
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            None => return None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for head_request in [false, true] {
        let mut buf = BytesMut::from(data);
        if let Ok(Some(_)) = read_response_head(&mut buf, head_request) {
            assert!(buf.len() < data.len(), "a head that took no bytes");
            assert_eq!(&data[data.len() - buf.len()..], &buf[..], "the rest is not the input's tail");
        }
    }
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let whole = dechunk(data, data.len().max(1));
    let pieces = dechunk(data, step);
    assert_eq!(whole, pieces, "decoded differently in pieces of {step}");
});
