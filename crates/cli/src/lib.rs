//! Library half of the `shmlane` command: its argument grammar and its input framing, so the
//! fuzz targets exercise exactly what the binary runs.

pub mod args;
pub mod errs;
pub mod input;
pub mod line;
pub mod names;
pub mod recfile;
pub mod share;

/// Fuzz entry point: parses arbitrary bytes as a command line (arguments separated by NUL
/// bytes) and every argument as a duration: an error or a parsed command, never a panic.
#[doc(hidden)]
pub fn fuzz_args(data: &[u8]) {
    use clap::Parser;
    let argv: Vec<String> = std::iter::once("shmlane".to_owned())
        .chain(
            data.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        )
        .collect();
    for a in &argv[1..] {
        let _ = args::parse_duration(a);
    }
    if let Ok(cli) = args::Cli::try_parse_from(&argv) {
        let _ = format!("{:?}", cli.cmd);
    }
}
