//! `antre::path::canonicalise` on arbitrary request paths: it never panics,
//! and what it accepts is a path in its one spelling.

#![no_main]

use antre::path::canonicalise;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Paths come from hyper as `&str`; valid UTF-8 as it is, and everything
    // else the way a lossy conversion would hand it over.
    match std::str::from_utf8(data) {
        Ok(raw) => check(raw),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

fn check(raw: &str) {
    let Ok(canonical) = canonicalise(raw) else {
        return;
    };
    let path = canonical.as_str();
    let key = canonical.key();

    // A fixed point: the origin receives `path`, and antre must read that
    // path exactly as it read `raw`, or routing and origin could disagree.
    match canonicalise(path) {
        Ok(again) => assert_eq!(again, canonical, "{raw:?} is not a fixed point"),
        Err(e) => panic!("{raw:?} gave {path:?}, which is refused: {e}"),
    }

    for (what, text) in [("path", path), ("key", key)] {
        assert!(text.starts_with('/'), "{raw:?}: {what} {text:?} is not absolute");
        assert!(!text.contains("//"), "{raw:?}: {what} {text:?} holds //");
        assert!(!text.contains('\\'), "{raw:?}: {what} {text:?} holds \\");
        assert!(
            !text.bytes().any(|b| b < 0x20 || b == 0x7f),
            "{raw:?}: {what} {text:?} holds a control byte"
        );
    }
    // What the origin receives is plain ASCII: everything else is escaped.
    assert!(
        path.bytes().all(|b| b.is_ascii_graphic()),
        "{raw:?}: path {path:?} holds an unescaped byte"
    );
    for segment in key.split('/') {
        assert!(
            segment != "." && segment != "..",
            "{raw:?}: key {key:?} holds a dot segment"
        );
    }
}
