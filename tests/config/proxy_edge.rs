//! `proxy.trustedProxies`, `proxy.bodyTimeoutMs` and `proxy.allowedUpgrades`:
//! messages, fixes, did-you-mean, and the same values from every config format.

use crate::support::config::*;
use rollbridge::config::load;
use rollbridge::config::model::{IpRange, ProxyConfig};
use serde_json::{Value, json};

fn proxy(fields: Value) -> Value {
    with_root(json!({ "proxy": fields }))
}

/// The fix of the issue with `message`.
#[track_caller]
fn fix_of(value: &Value, message: &str) -> String {
    report(value)
        .issues
        .into_iter()
        .find(|issue| issue.message == message)
        .unwrap_or_else(|| panic!("no issue {message:?}"))
        .fix
}

#[test]
fn each_key_has_its_messages_and_fixes() {
    let cases = [
        (
            json!({"trustedProxies": "127.0.0.1"}),
            "proxy.trustedProxies must be an array",
        ),
        (
            json!({"trustedProxies": ["10.0.0.0/8", 7]}),
            "proxy.trustedProxies[1] must be a non-empty string",
        ),
        (
            json!({"trustedProxies": ["nginx.internal"]}),
            "proxy.trustedProxies[0] \"nginx.internal\" is not an IP address or CIDR block",
        ),
        (
            json!({"trustedProxies": ["10.0.0.0/33"]}),
            "proxy.trustedProxies[0] \"10.0.0.0/33\" is not an IP address or CIDR block",
        ),
        (
            json!({"trustedProxies": ["::1", "fd00::/129"]}),
            "proxy.trustedProxies[1] \"fd00::/129\" is not an IP address or CIDR block",
        ),
        (
            json!({"bodyTimeoutMs": "30s"}),
            "proxy.bodyTimeoutMs must be a number",
        ),
        (
            json!({"bodyTimeoutMs": -1}),
            "proxy.bodyTimeoutMs must be a non-negative number",
        ),
        (
            json!({"allowedUpgrades": "h2c"}),
            "proxy.allowedUpgrades must be an array",
        ),
        (
            json!({"allowedUpgrades": [""]}),
            "proxy.allowedUpgrades[0] must be a non-empty string",
        ),
        (
            json!({"allowedUpgrades": ["h2c, foo"]}),
            "proxy.allowedUpgrades[0] \"h2c, foo\" is not an Upgrade protocol name",
        ),
    ];
    for (fields, message) in cases {
        assert_issue(&proxy(fields), message);
    }
    assert!(
        fix_of(
            &proxy(json!({"trustedProxies": ["nginx.internal"]})),
            "proxy.trustedProxies[0] \"nginx.internal\" is not an IP address or CIDR block"
        )
        .contains("host names are not accepted")
    );
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    for (typo, suggestion) in [
        ("trustedProxy", "trustedProxies"),
        ("bodyTimeout", "bodyTimeoutMs"),
        ("allowedUpgrade", "allowedUpgrades"),
    ] {
        let config = proxy(json!({ typo: 1 }));
        let message = format!("proxy.{typo} is not a known key");
        assert_issue(&config, &message);
        assert!(
            fix_of(&config, &message).starts_with(&format!("Did you mean \"{suggestion}\"?")),
            "{typo}"
        );
    }
}

#[test]
fn values_pass_through_normalised() {
    let config = assert_valid(&proxy(json!({
        "trustedProxies": ["10.1.2.3/8", "192.0.2.7", "fd00::/8"],
        "bodyTimeoutMs": 1500.2,
        "allowedUpgrades": ["H2C", "websocket", "h2c", "foo/2"],
    })));
    let ranges = &config.proxy.trusted_proxies;
    assert_eq!(ranges.len(), 3);
    assert!(ranges[0].contains("10.200.0.1".parse().unwrap()));
    assert!(!ranges[0].contains("11.0.0.1".parse().unwrap()));
    assert!(
        ranges[1].contains("::ffff:192.0.2.7".parse().unwrap()),
        "mapped IPv4"
    );
    assert!(!ranges[1].contains("192.0.2.8".parse().unwrap()));
    assert!(ranges[2].contains("fd12::1".parse().unwrap()));
    assert!(!ranges[2].contains("127.0.0.1".parse().unwrap()));
    assert_eq!(config.proxy.body_timeout_ms, 1501, "fractions round up");
    assert_eq!(
        config.proxy.allowed_upgrades,
        vec!["h2c".to_string(), "foo/2".to_string()],
        "lower case, once, websocket needs no entry"
    );
    let nobody = assert_valid(&proxy(json!({"trustedProxies": [], "bodyTimeoutMs": 0})));
    assert!(nobody.proxy.trusted_proxies.is_empty());
    assert_eq!(nobody.proxy.body_timeout_ms, 0);
    let loopback = IpRange::loopback();
    assert!(
        loopback
            .iter()
            .any(|range| range.contains("127.9.9.9".parse().unwrap()))
    );
    assert!(
        loopback
            .iter()
            .any(|range| range.contains("::1".parse().unwrap()))
    );
}

fn expected_proxy(config: &ProxyConfig) {
    assert_eq!(
        config.trusted_proxies,
        vec![IpRange::parse("10.0.0.0/8").unwrap()]
    );
    assert_eq!(config.body_timeout_ms, 5000);
    assert_eq!(config.allowed_upgrades, vec!["h2c".to_string()]);
}

#[test]
fn every_format_gives_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let process = r#"{ id = "web", policy = "proxied", command = "run", port = { from = 18000, to = 18099 } }"#;
    let lua = write(
        dir.path(),
        "rollbridge.lua",
        &format!(
            r#"return {{
  proxy = {{ port = 8182, trustedProxies = {{ "10.0.0.0/8" }}, bodyTimeoutMs = 5000, allowedUpgrades = {{ "h2c" }} }},
  processes = {{ {process} }},
}}"#
        ),
    );
    expected_proxy(&load(&lua).expect("lua config").config.proxy);
    // An empty Lua table is an empty list: trust nobody.
    let empty = write(
        dir.path(),
        "empty/rollbridge.lua",
        &format!(
            "return {{ proxy = {{ port = 8182, trustedProxies = {{}} }}, processes = {{ {process} }} }}"
        ),
    );
    assert!(
        load(&empty)
            .expect("lua config")
            .config
            .proxy
            .trusted_proxies
            .is_empty()
    );
    let json = write(
        dir.path(),
        "json/rollbridge.json",
        r#"{ "proxy": { "port": 8182, "trustedProxies": ["10.0.0.0/8"], "bodyTimeoutMs": 5000, "allowedUpgrades": ["h2c"] },
  "processes": [{ "id": "web", "policy": "proxied", "command": "run", "port": { "from": 18000, "to": 18099 } }] }"#,
    );
    expected_proxy(&load(&json).expect("json config").config.proxy);
    if node_available("every_format_gives_the_same_settings (JavaScript part)") {
        let js = write(
            dir.path(),
            "js/rollbridge.config.cjs",
            r#"module.exports = { proxy: { port: 8182, trustedProxies: ["10.0.0.0/8"], bodyTimeoutMs: 5000, allowedUpgrades: ["h2c"] },
  processes: [{ id: "web", policy: "proxied", command: "run", port: { from: 18000, to: 18099 } }] };"#,
        );
        expected_proxy(&load(&js).expect("js config").config.proxy);
    }
}
