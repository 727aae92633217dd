//! The request rules applied at the edge, before a request is routed: what is
//! refused outright and what is normalised so the release sees one unambiguous
//! request (RFC 9112 §3.2 and §6.3). See docs/proxy.md, "Hostile input".

use http::header::{CONTENT_LENGTH, HOST};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use http_body::Body;
use std::os::fd::RawFd;

/// Why a request is refused before routing (each closes the client connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 405: `CONNECT` (this is not a forward proxy).
    Connect,
    /// 400, with the text the client gets.
    BadRequest(&'static str),
}

pub(crate) const NO_HOST: &str = "Missing Host header\n";
pub(crate) const MANY_HOSTS: &str = "More than one Host header\n";
pub(crate) const BAD_HOST: &str = "Invalid Host header\n";
pub(crate) const BAD_TARGET: &str = "Invalid request target\n";
pub(crate) const CONNECT_REFUSED: &str = "CONNECT is not supported\n";

/// Checks the client's request and normalises it in place: `Host` (exactly one,
/// valid; an HTTP/1.0 request without one gets the address the client connected
/// to), the request target (origin-form; asterisk-form for `OPTIONS` only;
/// absolute-form replaces `Host` with its authority) and `Content-Length` (plain
/// decimal). `client_socket` is the client connection's socket, only read for the
/// rare HTTP/1.0 request without `Host`.
pub(crate) fn admit<B: Body>(
    request: &mut Request<B>,
    client_socket: RawFd,
) -> Result<(), Refusal> {
    if request.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let target_authority = check_target(request)?;
    let headers = request.headers();
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) if is_valid_host(host.as_bytes()) => {}
        (Some(_), None) => return Err(Refusal::BadRequest(BAD_HOST)),
        (Some(_), Some(_)) => return Err(Refusal::BadRequest(MANY_HOSTS)),
        (None, _) if request.version() != Version::HTTP_10 => {
            return Err(Refusal::BadRequest(NO_HOST));
        }
        (None, _) => {
            if let Some(host) = listener_host(client_socket) {
                request.headers_mut().insert(HOST, host);
            }
        }
    }
    if let Some(authority) = target_authority {
        // RFC 9112 §3.2.2: the target's authority wins over the Host header.
        request.headers_mut().insert(HOST, authority);
    }
    normalise_content_length(request);
    Ok(())
}

/// The request target's authority when it is in absolute-form, after checking
/// the form suits the method.
fn check_target<B>(request: &Request<B>) -> Result<Option<HeaderValue>, Refusal> {
    let uri = request.uri();
    if uri.path() == "*" && uri.authority().is_none() {
        return match request.method() {
            &Method::OPTIONS => Ok(None),
            _ => Err(Refusal::BadRequest(BAD_TARGET)),
        };
    }
    let Some(authority) = uri.authority() else {
        return Ok(None);
    };
    let scheme_ok = uri.scheme() == Some(&Scheme::HTTP) || uri.scheme() == Some(&Scheme::HTTPS);
    // Authority-form (`host:port`) belongs to CONNECT; userinfo is never sent on.
    if !scheme_ok
        || authority.as_str().contains('@')
        || !is_valid_host(authority.as_str().as_bytes())
    {
        return Err(Refusal::BadRequest(BAD_TARGET));
    }
    Ok(Some(authority_value(authority)))
}

fn authority_value(authority: &Authority) -> HeaderValue {
    HeaderValue::from_str(authority.as_str()).expect("a parsed authority is a valid header value")
}

/// `uri-host [":" port]` (RFC 9110 §7.2), stricter than the RFC: a registered
/// name is letters, digits and `-._~` (no percent-encoding, no sub-delimiters
/// such as `,`), an IP literal is `[` hex digits, `:` and `.` `]`, and a port is
/// one to five digits.
pub(crate) fn is_valid_host(host: &[u8]) -> bool {
    let (name_ok, port) = match host.first() {
        Some(b'[') => match host.iter().position(|&b| b == b']') {
            Some(end) => (
                end > 1
                    && host[1..end]
                        .iter()
                        .all(|&b| byte_class(b) & IP_LITERAL != 0),
                &host[end + 1..],
            ),
            None => return false,
        },
        _ => {
            // One pass: name bytes up to the first `:`.
            let name_end = host
                .iter()
                .position(|&b| byte_class(b) & NAME == 0)
                .unwrap_or(host.len());
            (name_end > 0, &host[name_end..])
        }
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    };
    name_ok && port_ok
}

/// Bits of [`byte_class`].
const NAME: u8 = 1;
const IP_LITERAL: u8 = 2;

/// What a `Host` byte may be part of, from a table: the check runs on every request.
fn byte_class(byte: u8) -> u8 {
    const TABLE: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut byte = 0;
        while byte < 256 {
            let b = byte as u8;
            let hex = b.is_ascii_hexdigit();
            let name = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
            table[byte] = (if name { NAME } else { 0 })
                | (if hex || b == b':' || b == b'.' {
                    IP_LITERAL
                } else {
                    0
                });
            byte += 1;
        }
        table
    };
    TABLE[byte as usize]
}

/// `Host` for an HTTP/1.0 request without one: the local address of the client's
/// connection (the proxy's own address as the client reached it).
fn listener_host(client_socket: RawFd) -> Option<HeaderValue> {
    use nix::sys::socket::{SockaddrStorage, getsockname};
    let address: SockaddrStorage = getsockname(client_socket).ok()?;
    let text = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
        (Some(v4), _) => std::net::SocketAddrV4::from(*v4).to_string(),
        (_, Some(v6)) => {
            let v6 = std::net::SocketAddrV6::from(*v6);
            match v6.ip().to_ipv4_mapped() {
                Some(v4) => format!("{v4}:{}", v6.port()),
                None => format!("[{}]:{}", v6.ip(), v6.port()),
            }
        }
        _ => return None,
    };
    HeaderValue::from_str(&text).ok()
}

/// Rewrites `Content-Length` as the plain decimal hyper framed the body by
/// (`010` becomes `10`, `5, 5` becomes `5`); the usual canonical value is left as is.
fn normalise_content_length<B: Body>(request: &mut Request<B>) {
    let headers: &HeaderMap = request.headers();
    let Some(value) = headers.get(CONTENT_LENGTH) else {
        return;
    };
    let bytes = value.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1)
        && headers.get_all(CONTENT_LENGTH).iter().nth(1).is_none();
    if canonical {
        return;
    }
    if let Some(length) = request.body().size_hint().exact() {
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_ip_literals_with_an_optional_port() {
        for good in [
            "a",
            "example.test",
            "example.test:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8182",
            "my_app-1.internal~x",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "a, b", "a b", "a,b", "a:", "a:123456", "a:x", ":80", "[::1", "[]", "[x]", "a@b",
            "a/b", "a\"b", "[::1]x",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn request(method: Method, target: &str, version: Version, hosts: &[&str]) -> Request<String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(String::new()).unwrap()
    }

    #[test]
    fn targets_and_hosts_are_checked() {
        let admit = |mut r: Request<String>| admit(&mut r, -1).map(|()| r);
        let v11 = Version::HTTP_11;
        assert_eq!(
            admit(request(Method::CONNECT, "a:22", v11, &["a:22"])).unwrap_err(),
            Refusal::Connect
        );
        assert!(admit(request(Method::OPTIONS, "*", v11, &["a"])).is_ok());
        assert_eq!(
            admit(request(Method::GET, "*", v11, &["a"])).unwrap_err(),
            Refusal::BadRequest(BAD_TARGET)
        );
        assert_eq!(
            admit(request(Method::GET, "/", v11, &[])).unwrap_err(),
            Refusal::BadRequest(NO_HOST)
        );
        assert_eq!(
            admit(request(Method::GET, "/", v11, &["a", "a"])).unwrap_err(),
            Refusal::BadRequest(MANY_HOSTS)
        );
        assert_eq!(
            admit(request(Method::GET, "/", v11, &["a, b"])).unwrap_err(),
            Refusal::BadRequest(BAD_HOST)
        );
        let absolute = admit(request(
            Method::GET,
            "http://internal:81/x",
            v11,
            &["public"],
        ))
        .unwrap();
        assert_eq!(absolute.headers()[HOST], "internal:81");
        for bad in ["ftp://a/x", "http://u@a/x", "a:80"] {
            assert_eq!(
                admit(request(Method::GET, bad, v11, &["a"])).unwrap_err(),
                Refusal::BadRequest(BAD_TARGET),
                "{bad}"
            );
        }
        // HTTP/1.0 without Host is fine (the socket is not one here: no Host added).
        let old = admit(request(Method::GET, "/", Version::HTTP_10, &[])).unwrap();
        assert!(!old.headers().contains_key(HOST));
    }
}
