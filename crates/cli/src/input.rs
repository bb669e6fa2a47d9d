//! How `shmlane send` reads its input: one message a line, the newline removed, each checked
//! against the channel's largest message before anything is sent.

use std::io::BufRead;

/// Why the next line could not be taken.
#[derive(Debug)]
pub enum LineError {
    /// Reading the input failed.
    Io(std::io::Error),
    /// Line `line` (counting from 1) has more than `max` bytes: `len` of them were read (the
    /// rest of it is left unread).
    TooLong {
        /// Which line.
        line: u64,
        /// Its length without the newline.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
}

/// The lines of an input, as messages of at most `max` bytes.
#[derive(Debug)]
pub struct Lines<R> {
    input: R,
    max: usize,
    count: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads `input`, refusing lines longer than `max` bytes.
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input,
            max,
            count: 0,
        }
    }

    /// Lines taken so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Puts the next line, without its newline, into `line`: `Ok(true)`, or `Ok(false)` at the
    /// end of the input. A last line without a newline is a line; an empty line is a message.
    /// A line longer than `max` is refused as soon as `max + 1` of its bytes have been read
    /// (its `len` is then that much: "more than `max`"), never buffered whole: an input with
    /// no newline (`cat /dev/zero`, or a pipe that stays open) ends the command at once
    /// instead of growing its memory or waiting for a newline that may never come.
    pub fn next_into(&mut self, line: &mut Vec<u8>) -> Result<bool, LineError> {
        line.clear();
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            // Enough to hold a line of `max` bytes and its newline, or to know it is longer.
            let room = self.max + 1 - line.len();
            let (take, ended) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (buf.len().min(room), false),
            };
            line.extend_from_slice(&buf[..take]);
            self.input.consume(take);
            if ended {
                break;
            }
            if line.len() > self.max {
                self.count += 1;
                return Err(LineError::TooLong {
                    line: self.count,
                    len: line.len(),
                    max: self.max,
                });
            }
        }
        if !any {
            return Ok(false);
        }
        self.count += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        debug_assert!(line.len() <= self.max);
        Ok(true)
    }
}

/// Fuzz entry point: the first two bytes choose the largest message (0–511), the rest is the
/// input. Every line taken must be at most that long and free of newlines, and the lines, each
/// followed by a newline, must give back the input (up to a refused line).
#[doc(hidden)]
pub fn fuzz_lines(data: &[u8]) {
    let (max, input) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b]) % 512), rest),
        _ => return,
    };
    let mut lines = Lines::new(input, max);
    let mut again = Vec::new();
    let mut line = Vec::new();
    loop {
        match lines.next_into(&mut line) {
            Ok(true) => {
                assert!(line.len() <= max && !line.contains(&b'\n'));
                again.extend_from_slice(&line);
                again.push(b'\n');
            }
            Ok(false) => {
                // The whole input, give or take the last newline.
                assert!(
                    again == input || (again.len() == input.len() + 1 && again.starts_with(input))
                );
                return;
            }
            Err(LineError::TooLong {
                line: n,
                len,
                max: m,
            }) => {
                assert!(len > m && n == lines.count());
                assert!(input.starts_with(&again));
                return;
            }
            Err(LineError::Io(e)) => panic!("reading a slice failed: {e}"),
        }
    }
}
