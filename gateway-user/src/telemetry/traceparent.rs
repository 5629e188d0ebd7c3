//! W3C Trace Context (`traceparent`, `tracestate`) parsing and formatting, and id generation.
//! <https://www.w3.org/TR/trace-context/>

/// A parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`. Rejects all-zero ids, version `ff`, uppercase hex,
/// and (for version 00) trailing data, per the spec. Future versions may carry extra fields.
pub fn parse(value: &str) -> Option<TraceParent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let version = hex_byte(version)?;
    if version == 0xff || (version == 0 && parts.next().is_some()) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    decode(trace, &mut trace_id)?;
    let mut span_id = [0u8; 8];
    decode(span, &mut span_id)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    let flags = hex_byte(flags)?;
    Some(TraceParent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Formats a version-00 `traceparent`.
pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    s.push_str(&crate::ctx::hex(trace_id));
    s.push('-');
    s.push_str(&crate::ctx::hex(span_id));
    s.push_str(if sampled { "-01" } else { "-00" });
    s
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    Some(hex_nibble(b[0])? << 4 | hex_nibble(b[1])?)
}

fn decode(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    for (i, o) in out.iter_mut().enumerate() {
        *o = hex_nibble(b[2 * i])? << 4 | hex_nibble(b[2 * i + 1])?;
    }
    Some(())
}

/// A random, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

/// A random, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Keeps a `tracestate` only if it is plausibly well-formed (bounded length, printable ASCII),
/// so the gateway never forwards garbage it was handed.
pub fn sanitize_tracestate(v: &str) -> Option<&str> {
    let v = v.trim();
    (!v.is_empty() && v.len() <= 512 && v.bytes().all(|b| (0x20..0x7f).contains(&b))).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let tp = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(
            crate::ctx::hex(&tp.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(crate::ctx::hex(&tp.span_id), "00f067aa0ba902b7");
        assert!(tp.sampled);
        assert_eq!(
            format(&tp.trace_id, &tp.span_id, true),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn table_of_invalid_headers() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unsampled_flag_and_future_version() {
        let tp = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!tp.sampled);
        let tp =
            parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what").expect("future");
        assert!(tp.sampled);
    }

    #[test]
    fn ids_are_nonzero_and_distinct() {
        assert_ne!(new_trace_id(), new_trace_id());
        assert_ne!(new_span_id(), [0; 8]);
    }

    #[test]
    fn tracestate_is_bounded() {
        assert_eq!(
            sanitize_tracestate(" congo=t61rcWkgMzE "),
            Some("congo=t61rcWkgMzE")
        );
        assert_eq!(sanitize_tracestate(&"a".repeat(600)), None);
        assert_eq!(sanitize_tracestate("a=\u{7}"), None);
    }

    #[test]
    fn random_input_never_panics_and_roundtrips() {
        let alphabet = b"0123456789abcdefABCDEF-xz \xc3\xa9";
        for _ in 0..20_000 {
            let len = rand::random::<u8>() as usize % 70;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rand::random::<u8>() as usize % alphabet.len()])
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            if let Some(tp) = parse(&s) {
                let again = format(&tp.trace_id, &tp.span_id, tp.sampled);
                assert_eq!(parse(&again), Some(tp), "{s:?}");
            }
        }
    }
}
