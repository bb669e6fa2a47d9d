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
    delim: u8,
    terminated: bool,
}

impl<R: BufRead> Lines<R> {
    /// Reads `input`, refusing lines longer than `max` bytes.
    pub fn new(input: R, max: usize) -> Self {
        Self::with_delimiter(input, max, b'\n')
    }

    /// Reads `input` split at `delim` (`-0`: NUL) instead of newlines.
    pub fn with_delimiter(input: R, max: usize, delim: u8) -> Self {
        Self {
            input,
            max,
            count: 0,
            delim,
            terminated: true,
        }
    }

    /// Whether the last line taken ended with the delimiter (only the last line of an input
    /// can end without one): the receiver then writes none after it either.
    pub fn terminated(&self) -> bool {
        self.terminated
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
            let (take, ended) = match buf.iter().position(|&b| b == self.delim) {
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
        self.terminated = line.last() == Some(&self.delim);
        if self.terminated {
            line.pop();
        }
        debug_assert!(line.len() <= self.max);
        Ok(true)
    }
}

/// Fuzz entry point: the first two bytes choose the largest message (0–511), the rest is the
/// input. Every line taken must be at most that long and free of newlines, and the lines, each
/// followed by a newline unless it was taken as unterminated, must give back the input exactly
/// (up to a refused line).
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
                if lines.terminated() {
                    again.push(b'\n');
                }
            }
            Ok(false) => {
                // The whole input, byte for byte (no newline added).
                assert!(again == input);
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

/// Why the next frame could not be taken.
#[derive(Debug)]
pub enum FrameError {
    /// Reading the input failed.
    Io(std::io::Error),
    /// Frame `frame` (counting from 1) says it has `len` bytes, more than `max` (none of its
    /// bytes are read).
    TooLong {
        /// Which frame.
        frame: u64,
        /// The length its prefix gives.
        len: u64,
        /// The channel's largest message.
        max: usize,
    },
    /// The input ended inside frame `frame`: `got` of the `want` bytes of its prefix and body
    /// were there.
    Truncated {
        /// Which frame.
        frame: u64,
        /// Bytes of the frame (prefix included) that were read.
        got: usize,
        /// Bytes the frame has (prefix included), or 4 when the prefix itself was cut.
        want: usize,
    },
}

/// The frames of an input: each a 4-byte little-endian length, then that many bytes.
#[derive(Debug)]
pub struct Frames<R> {
    input: R,
    max: usize,
    count: u64,
}

impl<R: BufRead> Frames<R> {
    /// Reads `input`, refusing frames longer than `max` bytes.
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input,
            max,
            count: 0,
        }
    }

    /// Frames taken so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads up to `buf.len()` bytes, as many as the input has: the number read (less only at
    /// the end of the input).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Puts the next frame's bytes into `msg`: `Ok(true)`, or `Ok(false)` at the end of the
    /// input (which must fall between frames).
    pub fn next_into(&mut self, msg: &mut Vec<u8>) -> Result<bool, FrameError> {
        msg.clear();
        let mut prefix = [0u8; 4];
        let got = self.fill(&mut prefix).map_err(FrameError::Io)?;
        if got == 0 {
            return Ok(false);
        }
        let frame = self.count + 1;
        if got < 4 {
            return Err(FrameError::Truncated {
                frame,
                got,
                want: 4,
            });
        }
        let len = u32::from_le_bytes(prefix);
        if u64::from(len) > self.max as u64 {
            return Err(FrameError::TooLong {
                frame,
                len: u64::from(len),
                max: self.max,
            });
        }
        let len = len as usize;
        msg.resize(len, 0);
        let got = self.fill(msg).map_err(FrameError::Io)?;
        if got < len {
            msg.truncate(got);
            return Err(FrameError::Truncated {
                frame,
                got: 4 + got,
                want: 4 + len,
            });
        }
        self.count = frame;
        Ok(true)
    }
}

/// Fuzz entry point: as [`fuzz_lines`], for frames: every frame taken is at most the limit,
/// and the frames taken, each with its prefix, are the start of the input (all of it when it
/// ends cleanly).
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let (max, input) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b]) % 512), rest),
        _ => return,
    };
    let mut frames = Frames::new(input, max);
    let mut again = Vec::new();
    let mut msg = Vec::new();
    loop {
        match frames.next_into(&mut msg) {
            Ok(true) => {
                assert!(msg.len() <= max);
                again.extend_from_slice(&(msg.len() as u32).to_le_bytes());
                again.extend_from_slice(&msg);
            }
            Ok(false) => {
                assert!(again == input);
                return;
            }
            Err(FrameError::TooLong { len, max: m, .. }) => {
                assert!(len > m as u64 && input.starts_with(&again));
                return;
            }
            Err(FrameError::Truncated { got, want, .. }) => {
                assert!(got < want && input.len() == again.len() + got);
                return;
            }
            Err(FrameError::Io(e)) => panic!("reading a slice failed: {e}"),
        }
    }
}
