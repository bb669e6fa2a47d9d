//! `shmlane metrics`: every segment's statistics in the Prometheus text exposition format
//! (version 0.0.4), printed once or served over HTTP (docs/operations.md, "Metrics").
//!
//! The figures are those of `stat --json` (one source: [`render`] reads its objects), so the
//! two never disagree. Every value was checked where `stat` read it from the segment; a field
//! a segment does not have (a file that is no channel, a channel kind without a ring) gives
//! no sample rather than a made-up one.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{CliError, sig};

/// One sample's labels beyond `channel`, and its value.
type Sample = (Vec<(&'static str, String)>, f64);

/// One metric family: its name, type, help, and how to read its samples from one segment's
/// `stat --json` object (label pairs beyond `channel`, and the value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Value) -> Vec<Sample>,
}

/// A number field of `v` (at a JSON pointer), if present and a number.
fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

/// One unlabelled sample from a number field.
fn plain(v: &Value, ptr: &str) -> Vec<Sample> {
    num(v, ptr).map(|x| (Vec::new(), x)).into_iter().collect()
}

/// A sample per side (`sent`, `received`) from the field `field` of each side's object.
fn per_side(v: &Value, field: &str) -> Vec<Sample> {
    ["sent", "received"]
        .iter()
        .filter_map(|side| {
            num(v, &format!("/{side}/{field}")).map(|x| (vec![("side", (*side).to_owned())], x))
        })
        .collect()
}

/// The bridge's counters (docs/bridge.md), one sample each, labelled `counter`.
const BRIDGE_COUNTERS: [&str; 9] = [
    "exported",
    "lapped",
    "imported",
    "lost",
    "duplicates",
    "dropped_full",
    "dropped_too_large",
    "looped",
    "malformed",
];

const FAMILIES: &[Family] = &[
    Family {
        name: "shmlane_segment_info",
        kind: "gauge",
        help: "A segment (always 1), labelled with its backend, channel kind and state.",
        samples: |v| {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            vec![(
                vec![
                    ("backend", s("backend")),
                    ("kind", s("kind")),
                    ("state", s("state")),
                ],
                1.0,
            )]
        },
    },
    Family {
        name: "shmlane_segment_size_bytes",
        kind: "gauge",
        help: "The segment's size in bytes.",
        samples: |v| plain(v, "/size"),
    },
    Family {
        name: "shmlane_channel_capacity",
        kind: "gauge",
        help: "The channel's ring: slots (spsc, mpmc, broadcast), bytes (bytes), value slots (latest).",
        samples: |v| plain(v, "/capacity"),
    },
    Family {
        name: "shmlane_channel_max_message_bytes",
        kind: "gauge",
        help: "The largest message the channel carries, in bytes.",
        samples: |v| plain(v, "/msg_size"),
    },
    Family {
        name: "shmlane_channel_queued",
        kind: "gauge",
        help: "Messages in an spsc or mpmc channel's ring now (written, not yet read).",
        samples: |v| match v.get("kind").and_then(Value::as_str) {
            Some("spsc" | "mpmc") => plain(v, "/len"),
            _ => Vec::new(),
        },
    },
    Family {
        name: "shmlane_channel_queued_bytes",
        kind: "gauge",
        help: "Bytes a byte channel's unread records take in its ring now (headers and padding included).",
        samples: |v| match v.get("kind").and_then(Value::as_str) {
            Some("bytes") => plain(v, "/len"),
            _ => Vec::new(),
        },
    },
    Family {
        name: "shmlane_latest_version",
        kind: "counter",
        help: "A latest-value channel's version: the writes it has had (0: never written).",
        samples: |v| plain(v, "/version"),
    },
    Family {
        name: "shmlane_channel_senders",
        kind: "gauge",
        help: "Live processes attached as senders.",
        samples: |v| plain(v, "/senders"),
    },
    Family {
        name: "shmlane_channel_receivers",
        kind: "gauge",
        help: "Live processes attached as receivers.",
        samples: |v| plain(v, "/receivers"),
    },
    Family {
        name: "shmlane_dead_attachments",
        kind: "gauge",
        help: "Attachments of processes that died (the segment is stale until they are cleared).",
        samples: |v| plain(v, "/dead_attachments"),
    },
    Family {
        name: "shmlane_never_waking_endpoints",
        kind: "gauge",
        help: "Endpoints attached with Wakes::Never (their peers poll instead of being woken).",
        samples: |v| {
            ["senders", "receivers"]
                .iter()
                .filter_map(|side| {
                    num(v, &format!("/never_waking/{side}"))
                        .map(|x| (vec![("side", (*side).to_owned())], x))
                })
                .collect()
        },
    },
    Family {
        name: "shmlane_messages_total",
        kind: "counter",
        help: "Messages sent or received through the channel.",
        samples: |v| per_side(v, "messages"),
    },
    Family {
        name: "shmlane_payload_bytes_total",
        kind: "counter",
        help: "Payload bytes the messages carried (see `shmlane stat --help`).",
        samples: |v| per_side(v, "payload_bytes"),
    },
    Family {
        name: "shmlane_stalls_total",
        kind: "counter",
        help: "Times a side found the ring full (sent) or empty (received) and had to wait.",
        samples: |v| per_side(v, "stalls"),
    },
    Family {
        name: "shmlane_sleeps_total",
        kind: "counter",
        help: "Times a side parked its thread (a futex wait).",
        samples: |v| per_side(v, "sleeps"),
    },
    Family {
        name: "shmlane_wakeups_total",
        kind: "counter",
        help: "Wake-ups a side issued to the other (futex wakes).",
        samples: |v| per_side(v, "wakeups"),
    },
    Family {
        name: "shmlane_lost_total",
        kind: "counter",
        help: "Messages lost: dropped by a drop-policy sender, or lapped broadcast messages a subscriber missed.",
        samples: |v| per_side(v, "lost"),
    },
    Family {
        name: "shmlane_bridge_running",
        kind: "gauge",
        help: "1 while a bridge serves the channel, 0 when the one that served it is gone.",
        samples: |v| {
            v.pointer("/bridge/running")
                .and_then(Value::as_bool)
                .map(|r| (Vec::new(), if r { 1.0 } else { 0.0 }))
                .into_iter()
                .collect()
        },
    },
    Family {
        name: "shmlane_bridge_messages_total",
        kind: "counter",
        help: "A bridge's counters for the channel (docs/bridge.md), by counter.",
        samples: |v| {
            BRIDGE_COUNTERS
                .iter()
                .filter_map(|c| {
                    num(v, &format!("/bridge/{c}")).map(|x| (vec![("counter", (*c).to_owned())], x))
                })
                .collect()
        },
    },
];

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The Prometheus text of `stat --json`'s array `all` (every segment): each family's HELP and
/// TYPE once, then its samples, one per segment (and side or counter), labelled `channel`.
pub(crate) fn render(all: &Value) -> String {
    let segments: &[Value] = all.as_array().map_or(&[], Vec::as_slice);
    let mut out = String::new();
    for f in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for seg in segments {
            let Some(name) = seg.get("name").and_then(Value::as_str) else {
                continue;
            };
            for (labels, value) in (f.samples)(seg) {
                let _ = write!(out, "{}{{channel=\"{}\"", f.name, escape(name));
                for (k, v) in labels {
                    let _ = write!(out, ",{k}=\"{}\"", escape(&v));
                }
                let _ = writeln!(out, "}} {value}");
            }
        }
    }
    out
}

/// How long one client may take to send its whole request (then it gets 408), and each write
/// of the answer: a slow or silent client holds the (one) serving thread about this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` at `addr` until SIGINT, SIGTERM or SIGHUP (then returns: exit 0).
/// Each scrape calls `read` (the segments as they are now). One client at a time.
pub(crate) fn serve(
    addr: SocketAddr,
    read: impl Fn() -> Result<Value, CliError>,
) -> Result<(), CliError> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        CliError(format!(
            "cannot listen on {addr}: {e} (another program may use the port: pick another, or port 0 for any free one)"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError(format!("listening on {addr}: {e}")))?;
    sig::install()?;
    // Non-blocking accepts polled every 50 ms: a signal is seen within that.
    listener
        .set_nonblocking(true)
        .map_err(|e| CliError(format!("listening on {addr}: {e}")))?;
    println!("serving the metrics of every segment at http://{local}/metrics (Ctrl-C stops)");
    let _ = std::io::stdout().flush();
    while sig::caught().is_none() {
        match listener.accept() {
            Ok((stream, _)) => {
                // A client's failure (it hung up, timed out) ends its request only.
                let _ = answer(stream, &read);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CliError(format!("accepting on {local}: {e}"))),
        }
    }
    Ok(())
}

/// Reads one request and answers it: `GET /metrics` the text, anything else 404 or 405.
fn answer(
    mut stream: TcpStream,
    read: &impl Fn() -> Result<Value, CliError>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    // The request line and headers, up to the blank line (CRLF or bare LF) or 8 KiB (enough
    // for any scraper), within one deadline for the whole request.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let ended =
        |r: &[u8]| r.windows(4).any(|w| w == b"\r\n\r\n") || r.windows(2).any(|w| w == b"\n\n");
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !ended(&req) && req.len() < 8192 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return reply(
                &mut stream,
                "408 Request Timeout",
                "send the request within 2 s\n",
            );
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return reply(
                    &mut stream,
                    "408 Request Timeout",
                    "send the request within 2 s\n",
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => match read() {
            Ok(all) => ("200 OK", render(&all)),
            Err(e) => ("500 Internal Server Error", format!("{}\n", e.0)),
        },
        ("GET", _) => ("404 Not Found", "the metrics are at /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_owned()),
    };
    reply(&mut stream, status, &body)
}

/// Writes one response and flushes it.
fn reply(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
