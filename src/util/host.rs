//! Host names as configs and URLs spell them.

/// The host without the brackets of an IPv6 literal (`[::1]` → `::1`), ready for
/// address parsing or binding; any other host is returned as is.
pub fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paired_brackets_are_removed() {
        assert_eq!(unbracketed("[::1]"), "::1");
        assert_eq!(unbracketed("::1"), "::1");
        assert_eq!(unbracketed("127.0.0.1"), "127.0.0.1");
        assert_eq!(unbracketed("localhost"), "localhost");
        assert_eq!(unbracketed("[::1"), "[::1");
    }
}
