//! W3C Trace Context `traceparent` (SPEC §10): kept with an event at ingest, continued on every
//! delivery attempt with the same trace id and a span id of its own.
//!
//! ```
//! use herald_core::Traceparent;
//! let tp = Traceparent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! let child = tp.child(0x1234);
//! assert_eq!(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000001234-01");
//! ```

/// A valid `traceparent` (version 00 form): trace id, parent span id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// 128-bit trace id, never zero.
    pub trace_id: u128,
    /// 64-bit parent span id, never zero.
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex_field(s: &str, len: usize) -> Option<&str> {
    (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(s)
}

impl Traceparent {
    /// Parses a header value; `None` when it is not a valid `traceparent` (which callers
    /// ignore, as the W3C recommendation says). Versions above 00 are read by their 00 prefix;
    /// version `ff`, upper-case hex and all-zero ids are invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let version = hex_field(value.get(..2)?, 2)?;
        if version == "ff" {
            return None;
        }
        let head = if version == "00" {
            (value.len() == 55).then_some(value)?
        } else {
            // A later version may append fields after a dash.
            match value.get(55..56) {
                None if value.len() == 55 => value,
                Some("-") => value.get(..55)?,
                _ => return None,
            }
        };
        let mut parts = head.split('-');
        let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = u128::from_str_radix(hex_field(trace, 32)?, 16).ok()?;
        let span_id = u64::from_str_radix(hex_field(span, 16)?, 16).ok()?;
        let flags = u8::from_str_radix(hex_field(flags, 2)?, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The `traceparent` of a child span `span_id` (never zero: zero is replaced by one) in
    /// the same trace, flags kept.
    pub fn child(&self, span_id: u64) -> String {
        self.with_span_id(span_id).to_string()
    }

    /// The same trace and flags with span `span_id` (zero is replaced by one).
    pub fn with_span_id(&self, span_id: u64) -> Self {
        Self {
            span_id: span_id.max(1),
            ..*self
        }
    }

    /// A new trace's root span: `trace_id` and `span_id` (zeros replaced by one), sampled.
    pub fn root(trace_id: u128, span_id: u64) -> Self {
        Self {
            trace_id: trace_id.max(1),
            span_id: span_id.max(1),
            flags: Self::SAMPLED,
        }
    }

    /// The `sampled` flag (bit 0 of the trace flags).
    pub const SAMPLED: u8 = 0x01;

    /// Whether the trace's caller asked for it to be recorded (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }
}

impl std::fmt::Display for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_same() {
        let tp = Traceparent::parse(OK).expect("valid");
        assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.span_id, 0x00f067aa0ba902b7);
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), OK);
    }

    #[test]
    fn refuses_invalid_values() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(Traceparent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_prefix() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert_eq!(
            Traceparent::parse(v).map(|t| t.to_string()).as_deref(),
            Some(OK)
        );
    }

    #[test]
    fn a_child_keeps_trace_and_flags() {
        let tp = Traceparent::parse(OK).expect("valid");
        let child = tp.child(0xabc);
        assert_eq!(
            child,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        assert_eq!(
            tp.child(0),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01"
        );
        assert!(tp.sampled());
        let unsampled = Traceparent { flags: 0, ..tp };
        assert!(!unsampled.with_span_id(7).sampled());
    }

    #[test]
    fn a_root_is_sampled_and_never_zero() {
        let root = Traceparent::root(0, 0);
        assert_eq!((root.trace_id, root.span_id), (1, 1));
        assert!(root.sampled());
        assert_eq!(Traceparent::parse(&root.to_string()), Some(root));
    }
}
