//! What the fuzz targets share: the fuzzer's bytes read as values, and one
//! byte of a signed value changed.

/// Reads the fuzzer's bytes as values, with zeros once they run out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        let mut bytes = taken.to_vec();
        bytes.resize(n, 0);
        bytes
    }

    pub fn byte(&mut self) -> u8 {
        self.bytes(1)[0]
    }

    pub fn u64(&mut self) -> u64 {
        let bytes: [u8; 8] = self.bytes(8).try_into().expect("8 bytes");
        u64::from_le_bytes(bytes)
    }

    /// Up to `max` bytes, the length given by the input.
    pub fn text(&mut self, max: usize) -> String {
        let len = usize::from(self.byte()) % (max + 1);
        let mut bytes = self.bytes(len);
        bytes.retain(|b| *b != 0);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `value` (not empty) with the byte the input picks set to another byte
/// the input picks; with that position and byte, for messages. Bytes that
/// are not UTF-8 are replaced, as a header or cookie parser would.
pub fn one_byte_changed(value: &str, input: &mut Input) -> (String, usize, u8) {
    let mut bytes = value.as_bytes().to_vec();
    let index = usize::from(input.byte()) % bytes.len();
    let mut byte = input.byte();
    if byte == bytes[index] {
        byte = byte.wrapping_add(1);
    }
    bytes[index] = byte;
    let altered = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (altered, index, byte)
}
