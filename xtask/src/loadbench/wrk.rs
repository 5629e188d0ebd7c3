//! Saturation load with `wrk` (closed loop: each connection sends its next request as soon as
//! the previous answer arrived), POSTing a JSON body through a generated Lua script, and the
//! parser for wrk's `--latency` report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Parsed `wrk --latency` output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx responses plus socket errors.
    pub errors: u64,
}

/// Writes the Lua script that turns wrk's GETs into JSON POSTs.
pub fn write_script(path: &Path, body: &str) -> anyhow::Result<()> {
    let escaped = body.replace('\\', "\\\\").replace('\'', "\\'");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{escaped}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer sk-bench-client-key\"\n"
    );
    std::fs::write(path, lua).with_context(|| format!("writing {}", path.display()))
}

/// Runs wrk against `url` (which carries the path) and parses its report.
pub fn run(
    url: &str,
    script: &Path,
    threads: u32,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk (Debian package `wrk`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Parses a duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`, `1.5m`) into µs.
fn parse_dur_us(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * mul)
}

pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut have_rps = false;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => r.p50_us = parse_dur_us(v)?,
            (Some("99%"), Some(v)) => r.p99_us = parse_dur_us(v)?,
            (Some("Requests/sec:"), Some(v)) => {
                r.rps = v.parse().ok()?;
                have_rps = true;
            }
            (Some("Non-2xx"), _) => {
                r.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?;
            }
            (Some("Socket"), Some("errors:")) => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                for part in line.trim_start_matches("Socket errors:").split(',') {
                    r.errors += part
                        .split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            (Some(n), Some("requests")) => r.requests = n.parse().ok()?,
            _ => {}
        }
    }
    have_rps.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 3s test @ http://127.0.0.1:18800/v1/chat/completions
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us  300.12us  12.00ms   90.00%
    Req/Sec    19.50k     1.20k   22.00k    70.00%
  Latency Distribution
     50%  750.00us
     75%    0.90ms
     90%    1.10ms
     99%    2.50ms
  117000 requests in 3.00s, 60.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  38999.50
Transfer/sec:     20.00MB
";

    #[test]
    fn parses_wrk_report() {
        let r = parse(SAMPLE).expect("parse");
        assert_eq!(r.requests, 117000);
        assert_eq!(r.rps, 38999.5);
        assert_eq!(r.p50_us, 750.0);
        assert_eq!(r.p99_us, 2500.0);
        assert_eq!(r.errors, 8);
    }

    #[test]
    fn rejects_output_without_rate() {
        assert_eq!(parse("wrk: connection refused"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_dur_us("2.00s"), Some(2e6));
        assert_eq!(parse_dur_us("1.5m"), Some(90e6));
        assert_eq!(parse_dur_us("abc"), None);
    }

    #[test]
    fn script_escapes_quotes() {
        let dir = std::env::temp_dir().join(format!("wrk-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("post.lua");
        write_script(&p, r#"{"a":"it's"}"#).expect("write");
        let lua = std::fs::read_to_string(&p).expect("read");
        assert!(lua.contains(r#"wrk.body = '{"a":"it\'s"}'"#), "{lua}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
