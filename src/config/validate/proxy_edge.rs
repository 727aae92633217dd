//! The proxy's hostile-input settings: `proxy.trustedProxies`,
//! `proxy.bodyTimeoutMs` and `proxy.allowedUpgrades`.

use super::{Validator, millis};
use crate::config::model::IpRange;
use serde_json::Value;

/// `proxy.bodyTimeoutMs` when unset.
pub(super) const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;

/// The items of a list-valued key; `None` when it is absent, or (after reporting)
/// not a list. An empty Lua table may arrive as an empty object.
fn list<'v>(
    v: &mut Validator,
    value: Option<&'v Value>,
    key: &str,
    fix: &str,
) -> Option<&'v [Value]> {
    match value? {
        Value::Array(items) => Some(items),
        Value::Object(map) if map.is_empty() && v.ctx.lenient_empty_tables => Some(&[]),
        other => {
            v.wrong_type(
                Some(other),
                format!("{key} must be an array"),
                fix.to_string(),
            );
            None
        }
    }
}

/// The non-empty strings of a list with their positions; other items are reported.
fn strings<'v>(
    v: &mut Validator,
    items: &'v [Value],
    key: &str,
    what: &str,
) -> Vec<(usize, &'v str)> {
    let mut strings = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) if !text.is_empty() => strings.push((index, text.as_str())),
            other => v.wrong_type(
                Some(other),
                format!("{key}[{index}] must be a non-empty string"),
                format!("Replace {key}[{index}] with {what}."),
            ),
        }
    }
    strings
}

pub(super) fn validate_trusted_proxies(v: &mut Validator, value: Option<&Value>) -> Vec<IpRange> {
    const KEY: &str = "proxy.trustedProxies";
    let Some(items) = list(
        v,
        value,
        KEY,
        "Make proxy.trustedProxies a list of addresses or CIDR blocks, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]; [] trusts no peer.",
    ) else {
        return IpRange::loopback();
    };
    let mut ranges = Vec::new();
    for (index, text) in strings(v, items, KEY, "an address or CIDR block such as 10.0.0.0/8") {
        match IpRange::parse(text.trim()) {
            Some(range) => ranges.push(range),
            None => v.issue(
                format!("{KEY}[{index}] \"{text}\" is not an IP address or CIDR block"),
                "Write one IPv4 or IPv6 address (127.0.0.1, ::1) or a block with its prefix length (10.0.0.0/8, fd00::/8); host names are not accepted.",
            ),
        }
    }
    ranges
}

pub(super) fn validate_body_timeout(v: &mut Validator, value: Option<&Value>) -> u64 {
    v.non_negative_number(value, "proxy.bodyTimeoutMs", DEFAULT_BODY_TIMEOUT_MS)
        .map_or(DEFAULT_BODY_TIMEOUT_MS, millis)
}

pub(super) fn validate_allowed_upgrades(v: &mut Validator, value: Option<&Value>) -> Vec<String> {
    const KEY: &str = "proxy.allowedUpgrades";
    let Some(items) = list(
        v,
        value,
        KEY,
        "Make proxy.allowedUpgrades a list of Upgrade protocol names, e.g. [\"h2c\"], or remove it (WebSocket needs no entry).",
    ) else {
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for (index, token) in strings(v, items, KEY, "a protocol name such as h2c") {
        if !token.bytes().all(is_token_byte) {
            v.issue(
                format!("{KEY}[{index}] \"{token}\" is not an Upgrade protocol name"),
                "Use the protocol name exactly as it appears in the Upgrade header (letters, digits and !#$%&'*+-.^_`|~, optionally /version), without spaces or commas.",
            );
            continue;
        }
        let lower = token.to_ascii_lowercase();
        if lower != "websocket" && !tokens.contains(&lower) {
            tokens.push(lower);
        }
    }
    tokens
}

/// A byte of an `Upgrade` protocol (RFC 9110 token, plus `/` before a version).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&byte)
}
