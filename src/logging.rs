//! Log output kept off the request path: each line is appended to a shared
//! buffer in memory, and a background thread writes the buffer to standard
//! error in large pieces.
//!
//! With the access log on, every request writes a line. Written straight to
//! standard error, that is one blocking system call per request under a
//! lock every worker shares, which costs a third of antre's throughput. An
//! append to memory costs a copy; the writer thread catches up every
//! [`FLUSH_EVERY`] or as soon as [`FLUSH_AT`] bytes wait.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Longest a line waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Bytes waiting that wake the writer at once.
pub const FLUSH_AT: usize = 64 * 1024;

/// Bytes held at most when standard error cannot keep up (a full pipe, a
/// stopped reader); further lines are dropped and counted, not queued
/// without bound.
pub const HOLD_AT_MOST: usize = 8 * 1024 * 1024;

struct Shared {
    /// Lines waiting, and how many were dropped since the last write. A
    /// std `Mutex`: held only to append or swap.
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    dropped: u64,
    closing: bool,
}

/// Hands each log line to the buffer; given to the `tracing` subscriber.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes what is left when dropped: keep it alive until the process ends.
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// The writer for the subscriber and the guard that flushes at exit.
pub fn buffered_stderr() -> (BufferedStderr, FlushOnDrop) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    });
    let writing = shared.clone();
    let writer = std::thread::Builder::new()
        .name("antre-log".into())
        .spawn(move || write_out(&writing, &mut std::io::stderr()))
        .ok();
    (
        BufferedStderr {
            shared: shared.clone(),
        },
        FlushOnDrop { shared, writer },
    )
}

/// The writer thread: waits for lines (or a while), then writes them all.
fn write_out(shared: &Shared, out: &mut impl Write) {
    let mut batch = Vec::new();
    loop {
        let (closing, dropped) = {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.waiting.is_empty() && !state.closing {
                state = shared
                    .wake
                    .wait_timeout(state, FLUSH_EVERY)
                    .map(|(state, _)| state)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            std::mem::swap(&mut batch, &mut state.waiting);
            (state.closing, std::mem::take(&mut state.dropped))
        };
        if dropped > 0 {
            let _ = writeln!(
                out,
                "antre: {dropped} log lines dropped: standard error could not keep up"
            );
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if closing {
            return;
        }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Write for BufferedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.waiting.len() + line.len() > HOLD_AT_MOST {
            state.dropped += 1;
        } else {
            state.waiting.extend_from_slice(line);
            if state.waiting.len() >= FLUSH_AT {
                self.shared.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_in_order_and_all_of_them_by_the_end() {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let mut writer = BufferedStderr {
            shared: shared.clone(),
        };
        for i in 0..1000 {
            writeln!(writer, "line {i}").unwrap();
        }
        shared.state.lock().unwrap().closing = true;
        let mut out = Vec::new();
        write_out(&shared, &mut out);
        let text = String::from_utf8(out).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn a_writer_that_cannot_keep_up_costs_lines_not_memory() {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let mut writer = BufferedStderr {
            shared: shared.clone(),
        };
        let line = vec![b'x'; 1024];
        for _ in 0..(HOLD_AT_MOST / 1024 + 10) {
            writer.write_all(&line).unwrap();
        }
        let state = shared.state.lock().unwrap();
        assert!(state.waiting.len() <= HOLD_AT_MOST);
        assert_eq!(state.dropped, 10);
    }
}
