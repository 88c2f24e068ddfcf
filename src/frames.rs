//! The HTTP/2 frames crossing a connection, watched so that a quiet one can
//! leave hyper (to wait in the lot, see [`crate::park`]) and come back to a
//! fresh hyper connection.
//!
//! hyper's HTTP/2 server holds tens of kilobytes per connection (frame
//! buffers, stream tables, header tables) for as long as it is open, and
//! has no way to put them down while the connection is idle. What of a
//! connection's HTTP/2 state must outlive a quiet moment is small: the
//! client's settings, the flow-control window the client gives us, and the
//! two header-compression tables. The tables are made not to matter:
//!
//! - antre's settings ask for a header table of size 0, so once the client
//!   has acknowledged them its encoder keeps no entries a fresh decoder
//!   would lack;
//! - a fresh encoder on our side is safe as it is: the client's decoder
//!   evicts its oldest entries first, so the entries a fresh encoder adds
//!   and refers to are the newest in both tables.
//!
//! A fresh hyper connection is given a preface made here (the client
//! preface and the client's settings so far), and what it writes at its
//! start that the client already has is dropped: its acknowledgement of
//! those settings and its first connection window update. Its own settings
//! are the same as before; the client acknowledges them again.
//!
//! A connection may leave only between frames in both directions, with no
//! header block open, our settings acknowledged, nothing of ours waiting to
//! be written, and a window from the client of at least the 65,535 bytes a
//! fresh connection assumes (it could otherwise send more than the client
//! allows). Our own receive window is safe either way: the client's view
//! of it never exceeds what a fresh connection assumes, because that first
//! window update is dropped.
//!
//! What a fresh connection cannot know: the streams opened before; it
//! would take a frame for one of them as one for a stream never opened, a
//! protocol error. A client may still reset such a stream or update its
//! window late (when a page reads a body slowly), so after a return those
//! two frames, for a stream up to the last one opened before, are turned
//! into a frame of a type no one uses, which the connection ignores, as
//! the old one would have. (When the frame's header is split across two
//! reads and its type byte already went to hyper, it cannot be turned: the
//! connection then ends with that protocol error, and its GOAWAY tells the
//! client to retry on a new one.)

/// A frame header's length.
const HEADER: usize = 9;

/// Every connection's flow-control window when it opens (RFC 9113, 6.9.2).
const OPENING_WINDOW: i64 = 65_535;

/// The client preface (RFC 9113, 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The settings remembered for a connection's return, one value per
/// setting (the latest): eight, more than any browser sends.
const SETTINGS_KEPT: usize = 8 * 6;

/// The longest SETTINGS frame read: a client may repeat a setting, and a
/// frame longer than this keeps its connection in hyper.
const SETTINGS_READ: usize = 16 * 6;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

/// A frame type no one has registered: receivers ignore such frames
/// (RFC 9113, 4.1).
const IGNORED: u8 = 0xff;

const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame's header.
#[derive(Debug, Clone, Copy)]
struct Head {
    length: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(bytes: &[u8; HEADER]) -> Head {
        Head {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether its payload is read here: settings and window updates on
    /// the connection.
    fn wanted(&self) -> bool {
        self.stream == 0 && matches!(self.kind, SETTINGS | WINDOW_UPDATE)
    }
}

/// Where one direction's bytes stand among its frames.
#[derive(Debug)]
struct Cursor {
    /// Bytes before the first frame (the client preface).
    skip: usize,
    head: [u8; HEADER],
    /// Bytes of `head` seen: the frame's payload follows once it is full.
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
    /// The current frame's payload, when [`Head::wanted`] (first bytes).
    payload: [u8; SETTINGS_READ],
    payload_len: usize,
}

impl Cursor {
    fn new(skip: usize) -> Cursor {
        Cursor {
            skip,
            head: [0; HEADER],
            have: 0,
            left: 0,
            payload: [0; SETTINGS_READ],
            payload_len: 0,
        }
    }

    fn at_boundary(&self) -> bool {
        self.skip == 0 && self.have == 0
    }

    /// Whether the current frame's header is whole (its payload follows).
    fn in_payload(&self) -> bool {
        self.have == HEADER
    }

    /// Takes in `bytes`, calling `headed` with each frame header completed
    /// (and where in `bytes` its type byte is, when it came in them), and
    /// `done` with each frame completed and the first bytes of its payload
    /// when wanted.
    fn feed(
        &mut self,
        bytes: &[u8],
        mut headed: impl FnMut(Head, Option<usize>),
        mut done: impl FnMut(Head, &[u8]),
    ) {
        let mut at = self.skip.min(bytes.len());
        self.skip -= at;
        while at < bytes.len() {
            if self.have < HEADER {
                let n = (HEADER - self.have).min(bytes.len() - at);
                self.head[self.have..self.have + n].copy_from_slice(&bytes[at..at + n]);
                // The type byte is the header's fourth.
                let kind_at = (self.have <= 3 && 3 < self.have + n).then(|| at + 3 - self.have);
                self.have += n;
                at += n;
                if self.have < HEADER {
                    return;
                }
                let head = Head::parse(&self.head);
                self.left = head.length;
                self.payload_len = 0;
                headed(head, kind_at);
            }
            let head = Head::parse(&self.head);
            let n = self.left.min(bytes.len() - at);
            if head.wanted() {
                let room = SETTINGS_READ - self.payload_len;
                let kept = n.min(room);
                self.payload[self.payload_len..self.payload_len + kept]
                    .copy_from_slice(&bytes[at..at + kept]);
                self.payload_len += kept;
            }
            self.left -= n;
            at += n;
            if self.left == 0 {
                done(head, &self.payload[..self.payload_len]);
                self.have = 0;
            }
        }
    }
}

/// What a connection that waits outside hyper keeps of its HTTP/2 state.
#[derive(Debug)]
pub struct Resume {
    /// The client's settings so far, as a SETTINGS payload.
    settings: [u8; SETTINGS_KEPT],
    settings_len: usize,
    /// What the client lets us send before it updates the window.
    client_window: i64,
    /// The last stream the client opened.
    last_stream: u32,
}

impl Resume {
    /// A GOAWAY frame (no error) naming the last stream the client opened:
    /// said before the connection is closed while it waits.
    pub fn farewell(&self) -> [u8; HEADER + 8] {
        let mut out = [0u8; HEADER + 8];
        out[2] = 8;
        out[3] = GOAWAY;
        out[HEADER..HEADER + 4].copy_from_slice(&self.last_stream.to_be_bytes());
        out
    }

    /// The bytes to give a fresh hyper connection before the client's own:
    /// the client preface and one SETTINGS frame with the client's
    /// settings.
    pub fn preface(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREFACE.len() + HEADER + self.settings_len);
        out.extend_from_slice(PREFACE);
        let length = self.settings_len as u32;
        out.extend_from_slice(&length.to_be_bytes()[1..]);
        out.extend_from_slice(&[SETTINGS, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&self.settings[..self.settings_len]);
        out
    }
}

/// Both directions of one HTTP/2 connection, frame by frame.
#[derive(Debug)]
pub struct Frames {
    read: Cursor,
    write: Cursor,
    /// The client's settings so far, as one SETTINGS payload.
    settings: [u8; SETTINGS_KEPT],
    settings_len: usize,
    /// More settings came than are kept: this connection stays in hyper.
    too_many_settings: bool,
    /// Our SETTINGS frames the client has not acknowledged yet.
    unacknowledged: u32,
    /// A header block begun and not ended (HEADERS without END_HEADERS,
    /// until the CONTINUATION that ends it).
    open_block: bool,
    /// What the client lets us send (the connection's send window).
    client_window: i64,
    /// The last stream the client opened.
    last_stream: u32,
    /// After a return, the last stream opened before it: resets and
    /// window updates for these are turned into frames to ignore.
    old_streams: u32,
    /// A write was refused (the socket is full): hyper holds bytes still.
    blocked: bool,
    /// After a return: the settings acknowledgement and the first
    /// connection window update a fresh hyper connection writes, which the
    /// client has had already, are still to drop.
    drop_ack: bool,
    drop_window: bool,
    /// Whether the frame being written now is one dropped.
    dropping: bool,
}

/// What to do with the bytes at the start of a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Write this many.
    Pass(usize),
    /// Drop this many: the client has them already.
    Drop(usize),
}

impl Frames {
    /// A connection whose client preface is still to be read.
    pub fn new() -> Frames {
        Frames::with(
            Cursor::new(PREFACE.len()),
            [0; SETTINGS_KEPT],
            0,
            OPENING_WINDOW,
        )
    }

    /// A connection coming back: its reads begin with `resume.preface()`
    /// (not counted again); what a fresh connection writes first that the
    /// client has already is dropped.
    pub fn resumed(resume: &Resume) -> Frames {
        let mut frames = Frames::with(
            Cursor::new(PREFACE.len() + HEADER + resume.settings_len),
            resume.settings,
            resume.settings_len,
            resume.client_window,
        );
        frames.drop_ack = true;
        frames.drop_window = true;
        frames.last_stream = resume.last_stream;
        frames.old_streams = resume.last_stream;
        frames
    }

    fn with(
        read: Cursor,
        settings: [u8; SETTINGS_KEPT],
        settings_len: usize,
        client_window: i64,
    ) -> Frames {
        Frames {
            read,
            write: Cursor::new(0),
            settings,
            settings_len,
            too_many_settings: false,
            unacknowledged: 0,
            open_block: false,
            client_window,
            last_stream: 0,
            old_streams: 0,
            blocked: false,
            drop_ack: false,
            drop_window: false,
            dropping: false,
        }
    }

    /// Bytes read from the client, on their way to hyper; after a return,
    /// frames for streams from before it are turned into frames to ignore
    /// (see the module's comment).
    pub fn read(&mut self, bytes: &mut [u8]) {
        let old_streams = self.old_streams;
        let mut forgotten = Vec::new();
        let Frames {
            read,
            settings,
            settings_len,
            too_many_settings,
            unacknowledged,
            open_block,
            client_window,
            last_stream,
            ..
        } = self;
        let headed = |head: Head, kind_at: Option<usize>| {
            let old = head.stream != 0 && head.stream <= old_streams;
            if old && matches!(head.kind, RST_STREAM | WINDOW_UPDATE) {
                // Its type byte, when it is in this read (see the module's
                // comment for when it is not).
                forgotten.extend(kind_at);
            }
        };
        read.feed(bytes, headed, |head, payload| match head.kind {
            SETTINGS if head.stream == 0 && head.flags & ACK != 0 => {
                *unacknowledged = unacknowledged.saturating_sub(1);
            }
            SETTINGS if head.stream == 0 => {
                if head.length > payload.len() || payload.len() % 6 != 0 {
                    *too_many_settings = true;
                    return;
                }
                for pair in payload.chunks_exact(6) {
                    let known = settings[..*settings_len]
                        .chunks_exact(6)
                        .position(|kept| kept[..2] == pair[..2]);
                    match known {
                        Some(i) => settings[i * 6..i * 6 + 6].copy_from_slice(pair),
                        None if *settings_len < SETTINGS_KEPT => {
                            settings[*settings_len..*settings_len + 6].copy_from_slice(pair);
                            *settings_len += 6;
                        }
                        None => *too_many_settings = true,
                    }
                }
            }
            WINDOW_UPDATE if head.stream == 0 && payload.len() == 4 => {
                let increment =
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                *client_window += i64::from(increment);
            }
            HEADERS | PUSH_PROMISE => {
                *open_block = head.flags & END_HEADERS == 0;
                if head.kind == HEADERS && head.stream > *last_stream {
                    *last_stream = head.stream;
                }
            }
            CONTINUATION if head.flags & END_HEADERS != 0 => *open_block = false,
            _ => {}
        });
        for at in forgotten {
            bytes[at] = IGNORED;
        }
    }

    /// What to do with `bytes`, the start of what hyper writes next: pass
    /// or drop how many (never zero of a non-empty write).
    pub fn plan(&mut self, bytes: &[u8]) -> Plan {
        let pass_all = Plan::Pass(bytes.len());
        if !(self.drop_ack || self.drop_window || self.dropping) || bytes.is_empty() {
            return pass_all;
        }
        let at = if self.write.in_payload() {
            // In a frame already begun: its fate was decided.
            self.write.left
        } else if self.write.have > 0 {
            return pass_all;
        } else {
            let Some(first) = bytes.first_chunk::<HEADER>() else {
                // A frame's header cut in two: too late to tell.
                self.drop_ack = false;
                self.drop_window = false;
                return pass_all;
            };
            let head = Head::parse(first);
            let settings_ack = head.kind == SETTINGS && head.flags & ACK != 0;
            let window = head.kind == WINDOW_UPDATE && head.stream == 0;
            if settings_ack && self.drop_ack {
                self.drop_ack = false;
                self.dropping = true;
            } else if window && self.drop_window {
                self.drop_window = false;
                self.dropping = true;
            }
            HEADER + head.length
        };
        let n = at.min(bytes.len());
        if self.dropping {
            Plan::Drop(n)
        } else {
            Plan::Pass(n)
        }
    }

    /// Bytes hyper wrote, sent to the client or dropped by [`Frames::plan`].
    pub fn wrote(&mut self, bytes: &[u8]) {
        self.blocked = false;
        let Frames {
            write,
            unacknowledged,
            client_window,
            dropping,
            ..
        } = self;
        write.feed(
            bytes,
            |_, _| {},
            |head, _| {
                if *dropping {
                    *dropping = false;
                    return;
                }
                match head.kind {
                    SETTINGS if head.flags & ACK == 0 => *unacknowledged += 1,
                    DATA => *client_window -= head.length as i64,
                    _ => {}
                }
            },
        );
    }

    /// Whether writes are still looked at frame by frame (a connection
    /// coming back, until it has written what is dropped).
    pub fn filtering(&self) -> bool {
        self.drop_ack || self.drop_window || self.dropping
    }

    /// A write found the socket full.
    pub fn blocked(&mut self) {
        self.blocked = true;
    }

    /// Whether the connection may leave hyper now, to come back with
    /// [`Frames::resume`].
    pub fn may_leave(&self) -> bool {
        self.read.at_boundary()
            && self.write.at_boundary()
            && !self.open_block
            && self.unacknowledged == 0
            && !self.too_many_settings
            && !self.blocked
            && !self.drop_ack
            && !self.drop_window
            && self.client_window >= OPENING_WINDOW
    }

    /// What the connection keeps while it waits.
    pub fn resume(&self) -> Resume {
        Resume {
            settings: self.settings,
            settings_len: self.settings_len,
            client_window: self.client_window,
            last_stream: self.last_stream,
        }
    }
}

impl Default for Frames {
    fn default() -> Self {
        Frames::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &payload)
    }

    /// A connection opened: the client's preface and settings, ours, and
    /// each side's acknowledgement.
    fn opened() -> Frames {
        let mut frames = Frames::new();
        let mut client = PREFACE.to_vec();
        client.extend(settings(&[(0x4, 6_291_456), (0x6, 262_144)]));
        client.extend(frame(WINDOW_UPDATE, 0, 0, &15_663_105u32.to_be_bytes()));
        // Fed a byte at a time: frames cut anywhere are still followed.
        for byte in &client {
            frames.read(&mut [*byte]);
        }
        frames.wrote(&settings(&[(0x1, 0)]));
        assert!(!frames.may_leave(), "our settings are not acknowledged yet");
        frames.read(&mut frame(SETTINGS, ACK, 0, &[]));
        frames.wrote(&frame(SETTINGS, ACK, 0, &[]));
        frames
    }

    #[test]
    fn a_quiet_connection_between_frames_may_leave() {
        let mut frames = opened();
        assert!(frames.may_leave());
        // A request's header block, cut before its end: not between frames.
        let mut headers = frame(HEADERS, 0x1, 1, b"abcdef");
        frames.read(&mut headers[..5]);
        assert!(!frames.may_leave());
        frames.read(&mut headers[5..]);
        assert!(!frames.may_leave(), "the header block is not ended");
        frames.read(&mut frame(CONTINUATION, END_HEADERS, 1, b"gh"));
        assert!(frames.may_leave());
        // A response half written.
        let data = frame(DATA, 0x1, 1, &[0; 100]);
        frames.wrote(&data[..50]);
        assert!(!frames.may_leave());
        frames.wrote(&data[50..]);
        assert!(frames.may_leave());
        frames.blocked();
        assert!(!frames.may_leave(), "hyper still holds bytes to write");
    }

    #[test]
    fn a_client_window_below_a_fresh_connections_keeps_it_in_hyper() {
        let mut frames = Frames::new();
        let mut client = PREFACE.to_vec();
        client.extend(settings(&[]));
        client.extend(frame(SETTINGS, ACK, 0, &[]));
        frames.wrote(&settings(&[]));
        frames.read(&mut client);
        assert!(frames.may_leave());
        frames.wrote(&frame(DATA, 0, 1, &[0; 1000]));
        assert!(!frames.may_leave(), "the client owes a window update");
        frames.read(&mut frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
        assert!(frames.may_leave());
    }

    #[test]
    fn a_return_replays_the_settings_and_drops_what_the_client_has() {
        let frames = opened();
        let resume = frames.resume();
        let mut preface = resume.preface();
        let mut expected = PREFACE.to_vec();
        expected.extend(settings(&[(0x4, 6_291_456), (0x6, 262_144)]));
        assert_eq!(preface, expected);

        let mut back = Frames::resumed(&resume);
        back.read(&mut preface);
        // The fresh connection's opening: its settings (passed), a window
        // update and the acknowledgement of the replayed settings
        // (dropped), then a ping answer (passed).
        let ours = settings(&[(0x1, 0)]);
        let window = frame(WINDOW_UPDATE, 0, 0, &983_041u32.to_be_bytes());
        let ack = frame(SETTINGS, ACK, 0, &[]);
        let pong = frame(0x6, ACK, 0, &[0; 8]);
        let mut written = Vec::new();
        let mut burst = [ours.clone(), window, ack, pong.clone()].concat();
        while !burst.is_empty() {
            let n = match back.plan(&burst) {
                Plan::Pass(n) => {
                    written.extend_from_slice(&burst[..n]);
                    n
                }
                Plan::Drop(n) => n,
            };
            back.wrote(&burst[..n]);
            burst.drain(..n);
        }
        assert_eq!(written, [ours, pong].concat());
        assert!(!back.may_leave(), "its settings are not acknowledged yet");
        back.read(&mut frame(SETTINGS, ACK, 0, &[]));
        assert!(back.may_leave());
        // A later window update is the connection's own: passed.
        let later = frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes());
        assert_eq!(back.plan(&later), Plan::Pass(later.len()));
    }

    #[test]
    fn the_farewell_names_the_last_stream_opened() {
        let mut frames = opened();
        frames.read(&mut frame(HEADERS, END_HEADERS, 1, b"a"));
        frames.read(&mut frame(HEADERS, END_HEADERS | 0x1, 7, b"b"));
        let resume = frames.resume();
        assert_eq!(
            resume.farewell().to_vec(),
            frame(GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0])
        );
        // Kept across a return.
        let back = Frames::resumed(&resume);
        assert_eq!(back.resume().farewell(), resume.farewell());
    }

    #[test]
    fn a_setting_sent_again_is_replayed_once_with_its_last_value() {
        let mut frames = opened();
        frames.read(&mut settings(&[(0x6, 1), (0x3, 100)]));
        let mut expected = PREFACE.to_vec();
        expected.extend(settings(&[(0x4, 6_291_456), (0x6, 1), (0x3, 100)]));
        assert_eq!(frames.resume().preface(), expected);
        assert!(frames.may_leave());
    }

    #[test]
    fn after_a_return_late_frames_for_earlier_streams_are_ignored() {
        let mut frames = opened();
        frames.read(&mut frame(HEADERS, END_HEADERS | 0x1, 5, b"a"));
        let mut back = Frames::resumed(&frames.resume());
        back.read(&mut frames.resume().preface());
        // A reset and a window update for stream 5, and for stream 7 (new).
        let mut late = [
            frame(RST_STREAM, 0, 5, &8u32.to_be_bytes()),
            frame(WINDOW_UPDATE, 0, 5, &1u32.to_be_bytes()),
            frame(RST_STREAM, 0, 7, &8u32.to_be_bytes()),
        ]
        .concat();
        // The second header cut before its type byte.
        let (first, rest) = late.split_at_mut(15);
        back.read(first);
        back.read(rest);
        let kinds: Vec<u8> = [0, 13, 26].iter().map(|at| late[at + 3]).collect();
        assert_eq!(kinds, [IGNORED, IGNORED, RST_STREAM]);
        assert!(back.read.at_boundary());
        // A connection that never waited changes nothing.
        let mut fresh = opened();
        let mut reset = frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());
        fresh.read(&mut reset);
        assert_eq!(reset[3], RST_STREAM);
    }

    #[test]
    fn too_many_settings_keep_it_in_hyper() {
        let mut frames = opened();
        let pairs: Vec<(u16, u32)> = (0..20).map(|i| (0x4, i)).collect();
        frames.read(&mut settings(&pairs));
        assert!(!frames.may_leave(), "a frame longer than is read");
        let mut frames = opened();
        let pairs: Vec<(u16, u32)> = (0x10..0x18).map(|id| (id, 1)).collect();
        frames.read(&mut settings(&pairs));
        assert!(!frames.may_leave(), "more settings than are kept");
    }
}
