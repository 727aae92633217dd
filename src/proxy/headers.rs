//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110
//! §7.6.1), the `X-Forwarded-*` family and `Forwarded` (RFC 7239), believed only
//! from trusted peers.

use bytes::{BufMut, BytesMut};
use http::header::{
    CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const TRANSFER_ENCODING_TWIN: HeaderName = HeaderName::from_static("transfer_encoding");
const CONTENT_LENGTH_TWIN: HeaderName = HeaderName::from_static("content_length");

/// Facts about the client connection that every request on it shares, prepared
/// once per connection so requests only copy cheap header values.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) address: HeaderValue,
    pub(crate) local_port: HeaderValue,
    /// The peer is one of `proxy.trustedProxies`: forwarded headers it sends are
    /// passed on (and extended) instead of replaced.
    pub(crate) trusted: bool,
}

impl ClientInfo {
    pub(crate) fn new(peer: IpAddr, local_port: HeaderValue, trusted: bool) -> ClientInfo {
        let address = match peer.to_canonical() {
            // The usual case, written by hand: `Display` through the formatting
            // machinery costs more than everything else done per connection here.
            IpAddr::V4(v4) => {
                let mut text = [0u8; 15];
                let mut len = 0;
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    len += write_decimal(&mut text[len..], octet);
                }
                HeaderValue::from_bytes(&text[..len])
            }
            IpAddr::V6(v6) => HeaderValue::from_str(&v6.to_string()),
        }
        .expect("an IP address is a valid header value");
        ClientInfo {
            address,
            local_port,
            trusted,
        }
    }
}

/// Writes `value` in decimal at the start of `out`; returns the digits written.
fn write_decimal(out: &mut [u8], value: u8) -> usize {
    let digits = [value / 100, value / 10 % 10, value % 10];
    let skip = if value >= 100 {
        0
    } else if value >= 10 {
        1
    } else {
        2
    };
    for (slot, digit) in out.iter_mut().zip(&digits[skip..]) {
        *slot = b'0' + digit;
    }
    3 - skip
}

/// Headers never passed on: the hop-by-hop set, and the underscore spellings of
/// the framing headers, which CGI-style backends read as the real ones while this
/// proxy framed the message by the real ones (a smuggling vector).
fn is_not_forwarded(name: &HeaderName) -> bool {
    // Against constant names: a standard header differs from these at the first
    // comparison, where a comparison with text would compare bytes.
    is_hop_by_hop(name) || name == TRANSFER_ENCODING_TWIN || name == CONTENT_LENGTH_TWIN
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_AUTHENTICATE
        || name == PROXY_AUTHORIZATION
        || name.as_str().starts_with("proxy-")
}

/// Does the `Connection` header list `token` (case-insensitive)?
pub(crate) fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Removes the hop-by-hop headers: the fixed set and every header the `Connection`
/// header names. With `keep_upgrade`, `Upgrade` survives and `Connection: upgrade`
/// is put back, because an upgrade handshake must reach the other side.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Fast path: most messages carry none of them.
    if !headers.keys().any(is_not_forwarded) {
        return;
    }
    // Only names that are present get removed: a removal hashes the name even when
    // it finds nothing, and responses usually carry just `Connection`.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_not_forwarded(name) && !(keep_upgrade && *name == UPGRADE))
        .cloned()
        .collect();
    doomed.extend(
        headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            // `close` is a connection option, never a header name (RFC 9110
            // reserves the name); `keep-alive` and `upgrade` are handled above.
            .filter(|item| {
                !item.eq_ignore_ascii_case(b"close")
                    && !item.eq_ignore_ascii_case(b"keep-alive")
                    && !item.eq_ignore_ascii_case(b"upgrade")
            })
            .filter_map(|item| HeaderName::from_bytes(item).ok()),
    );
    for name in doomed {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Adds the forwarded headers to a request bound upstream.
///
/// From a trusted peer (a proxy in front of rollbridge): `X-Forwarded-For` gets
/// the peer's address appended, `X-Forwarded-Proto`/`-Host`/`-Port` are kept when
/// present and filled in otherwise, and a `Forwarded` header gets this hop's
/// element appended. From any other peer, whatever it sent is replaced by what
/// rollbridge sees itself; a `Forwarded` header it sent becomes this hop's element
/// alone. rollbridge adds no `Forwarded` header of its own when none came.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: &ClientInfo) {
    let present = ForwardedPresent::scan(headers);
    // Room for all four at once instead of growing the table on the way.
    headers.reserve(4);
    let host = headers.get(HOST).cloned();
    if present.forwarded {
        let element = forwarded_element(client, host.as_ref());
        let value = if client.trusted {
            joined_list(headers, FORWARDED, &element)
        } else {
            element
        };
        headers.insert(FORWARDED, value);
    }
    let forwarded_for = if present.forwarded_for && client.trusted {
        joined_list(headers, X_FORWARDED_FOR, &client.address)
    } else {
        client.address.clone()
    };
    headers.insert(X_FORWARDED_FOR, forwarded_for);

    if !(client.trusted && present.proto) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(client.trusted && present.host) {
        match &host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
            None if present.host => {
                headers.remove(X_FORWARDED_HOST);
            }
            None => {}
        }
    }
    if !(client.trusted && present.port) {
        let port = host
            .as_ref()
            .and_then(|host| port_of_host(host, &client.local_port))
            .unwrap_or_else(|| client.local_port.clone());
        headers.insert(X_FORWARDED_PORT, port);
    }
}

/// Which forwarded headers a request carries. One pass over its header names
/// instead of a lookup per header: a lookup hashes the name even when it finds
/// nothing, and most requests carry none of them.
#[derive(Debug, Default)]
struct ForwardedPresent {
    forwarded_for: bool,
    proto: bool,
    host: bool,
    port: bool,
    forwarded: bool,
}

impl ForwardedPresent {
    fn scan(headers: &HeaderMap) -> ForwardedPresent {
        let mut present = ForwardedPresent::default();
        for name in headers.keys() {
            if name == X_FORWARDED_FOR {
                present.forwarded_for = true;
            } else if name == X_FORWARDED_PROTO {
                present.proto = true;
            } else if name == X_FORWARDED_HOST {
                present.host = true;
            } else if name == X_FORWARDED_PORT {
                present.port = true;
            } else if name == FORWARDED {
                present.forwarded = true;
            }
        }
        present
    }
}

/// This hop's `Forwarded` element: `for=<peer>;host="<Host>";proto=http`
/// (an IPv6 peer is quoted and bracketed, RFC 7239 §6).
fn forwarded_element(client: &ClientInfo, host: Option<&HeaderValue>) -> HeaderValue {
    let mut element = BytesMut::with_capacity(64);
    let address = client.address.as_bytes();
    element.put_slice(b"for=");
    if address.contains(&b':') {
        element.put_slice(b"\"[");
        element.put_slice(address);
        element.put_slice(b"]\"");
    } else {
        element.put_slice(address);
    }
    if let Some(host) = host {
        // Host values passed the edge rules: no quotes or backslashes inside.
        element.put_slice(b";host=\"");
        element.put_slice(host.as_bytes());
        element.put_u8(b'"');
    }
    element.put_slice(b";proto=http");
    HeaderValue::from_maybe_shared(element.freeze()).unwrap_or_else(|_| client.address.clone())
}

/// `existing, last` for a list-valued header, joining several existing header
/// lines first.
fn joined_list(headers: &HeaderMap, name: HeaderName, last: &HeaderValue) -> HeaderValue {
    let mut joined = BytesMut::with_capacity(64);
    for value in headers.get_all(name) {
        let value = value.as_bytes().trim_ascii();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.put_slice(b", ");
        }
        joined.put_slice(value);
    }
    if !joined.is_empty() {
        joined.put_slice(b", ");
    }
    joined.put_slice(last.as_bytes());
    HeaderValue::from_maybe_shared(joined.freeze()).unwrap_or_else(|_| last.clone())
}

/// The explicit port of a `Host` value (`example.test:8443`, `[::1]:8080`).
/// Clients talking to the proxy directly name its own port: that shared value is
/// reused instead of copying the digits.
fn port_of_host(host: &HeaderValue, local_port: &HeaderValue) -> Option<HeaderValue> {
    let host = host.as_bytes();
    let after_name = match host.first() {
        Some(b'[') => &host[host.iter().position(|&b| b == b']')? + 1..],
        _ => &host[host.iter().rposition(|&b| b == b':').unwrap_or(host.len())..],
    };
    let port = after_name.strip_prefix(b":")?;
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if port == local_port.as_bytes() {
        return Some(local_port.clone());
    }
    HeaderValue::from_bytes(port).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn client() -> ClientInfo {
        ClientInfo::new(
            "10.1.2.3".parse().unwrap(),
            HeaderValue::from(8182u16),
            true,
        )
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn upgrade_survives_for_handshakes() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
    }

    #[test]
    fn forwarded_headers_filled_when_absent() {
        let mut headers = map(&[("host", "example.test:8443")]);
        add_forwarded(&mut headers, &client());
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.test:8443");
        assert_eq!(headers["x-forwarded-port"], "8443");
    }

    #[test]
    fn forwarded_headers_kept_when_present_and_for_appended() {
        let mut headers = map(&[
            ("host", "example.test"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-host", "public.example"),
        ]);
        add_forwarded(&mut headers, &client());
        assert_eq!(
            headers["x-forwarded-for"],
            "203.0.113.9, 198.51.100.1, 10.1.2.3"
        );
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-port"], "443");
        assert_eq!(headers["x-forwarded-host"], "public.example");
    }

    #[test]
    fn an_untrusted_peer_gets_its_forwarded_headers_replaced() {
        let mut headers = map(&[
            ("host", "shop.test:8182"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ]);
        let untrusted = ClientInfo::new(
            "10.1.2.3".parse().unwrap(),
            HeaderValue::from(8182u16),
            false,
        );
        add_forwarded(&mut headers, &untrusted);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-port"], "8182");
        assert_eq!(headers["x-forwarded-host"], "shop.test:8182");
        assert_eq!(
            headers["forwarded"],
            "for=10.1.2.3;host=\"shop.test:8182\";proto=http"
        );
        let mut without_host = map(&[("x-forwarded-host", "evil")]);
        add_forwarded(&mut without_host, &untrusted);
        assert!(!without_host.contains_key("x-forwarded-host"));
    }

    #[test]
    fn a_trusted_peer_gets_this_hop_appended_to_forwarded() {
        let mut headers = map(&[
            ("host", "shop.test"),
            ("forwarded", "for=203.0.113.9;proto=https"),
        ]);
        let v6 = ClientInfo::new("::1".parse().unwrap(), HeaderValue::from(80u16), true);
        add_forwarded(&mut headers, &v6);
        assert_eq!(
            headers["forwarded"],
            "for=203.0.113.9;proto=https, for=\"[::1]\";host=\"shop.test\";proto=http"
        );
        let mut plain = map(&[("host", "shop.test")]);
        add_forwarded(&mut plain, &v6);
        assert!(!plain.contains_key("forwarded"), "none is made up");
    }

    #[test]
    fn underscore_spellings_of_framing_headers_go() {
        let mut headers = map(&[
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("x_kept", "1"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["x_kept"]);
    }

    #[test]
    fn port_falls_back_to_listener_port() {
        let mut headers = map(&[("host", "example.test")]);
        add_forwarded(&mut headers, &client());
        assert_eq!(headers["x-forwarded-port"], "8182");
        let mut headers = map(&[("host", "proxy.test:8182")]);
        add_forwarded(&mut headers, &client());
        assert_eq!(headers["x-forwarded-port"], "8182");
        let mut headers = map(&[("host", "[::1]:9000")]);
        add_forwarded(&mut headers, &client());
        assert_eq!(headers["x-forwarded-port"], "9000");
        let mut headers = map(&[("host", "[::1]")]);
        add_forwarded(&mut headers, &client());
        assert_eq!(headers["x-forwarded-port"], "8182");
    }

    #[test]
    fn mapped_ipv4_peer_is_shown_as_ipv4() {
        let info = ClientInfo::new(
            "::ffff:192.0.2.7".parse().unwrap(),
            HeaderValue::from(80u16),
            true,
        );
        assert_eq!(info.address, "192.0.2.7");
    }

    #[test]
    fn client_addresses_are_written_like_display() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "10.200.3.40",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let info = ClientInfo::new(ip, HeaderValue::from(80u16), true);
            assert_eq!(info.address, ip.to_string().as_str(), "{text}");
        }
    }

    #[test]
    fn connection_options_are_not_taken_for_header_names() {
        let mut headers = map(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("x-kept", "2"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        assert!(!headers.contains_key("connection"));
        assert!(!headers.contains_key("x-hop"));
        assert_eq!(headers["x-kept"], "2");
    }
}
