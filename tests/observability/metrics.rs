//! `/metrics` and the access log on a real daemon: the scrape parses under a
//! strict reading of the Prometheus text format, and the counters move after
//! requests and deploys.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

/// One sample: name, labels in their written order, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_metric_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("bad value {text:?}")),
    }
}

/// `{a="x",b="y"}` (already stripped of the braces) with `\\`, `\"`, `\n` escapes.
fn parse_labels(mut text: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (name, rest) = text
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {text}"))?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((index, '"')) => break index,
                Some((_, '\n')) => return Err("raw newline in a label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((name.to_string(), value));
        text = &rest[end + 1..];
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.is_empty() {
            return Err(format!("junk after a label: {text}"));
        }
    }
    Ok(labels)
}

/// Parses a scrape strictly: every line is a `# HELP`, a `# TYPE` or a sample;
/// a family is declared (HELP then TYPE) once, before its samples; samples
/// belong to the last declared family (`_bucket`/`_sum`/`_count` for
/// histograms); counters end in `_total` and are never negative; histogram
/// buckets are cumulative, end at `+Inf` and equal `_count`.
fn parse_scrape(text: &str) -> Result<Vec<Sample>, String> {
    assert!(text.ends_with('\n'), "a scrape ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut pending_help: Option<String> = None;
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest
                .split_once(' ')
                .ok_or_else(|| fail("HELP without text".into()))?;
            if !is_metric_name(name) || types.contains_key(name) {
                return Err(fail("bad or repeated HELP".into()));
            }
            pending_help = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("TYPE without kind".into()))?;
            if pending_help.as_deref() != Some(name) {
                return Err(fail("TYPE without its HELP".into()));
            }
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(fail(format!("unknown type {kind}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(fail("counter name without _total".into()));
            }
            types.insert(name.to_string(), kind.to_string());
            current = Some((name.to_string(), kind.to_string()));
            pending_help = None;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(fail("unexpected comment or blank line".into()));
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| fail("no value".into()))?;
            let value = parse_value(value).map_err(fail)?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .ok_or_else(|| fail("unclosed labels".into()))?;
                    (name, parse_labels(inner).map_err(fail)?)
                }
                None => (series, Vec::new()),
            };
            if !is_metric_name(name) {
                return Err(fail("bad metric name".into()));
            }
            let (family, kind) = current
                .clone()
                .ok_or_else(|| fail("sample before any TYPE".into()))?;
            let belongs = match kind.as_str() {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_string()),
                _ => name == family,
            };
            if !belongs {
                return Err(fail(format!("sample outside its family {family}")));
            }
            if kind == "counter" && (value < 0.0 || value.is_nan()) {
                return Err(fail("negative counter".into()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

/// A histogram series: its family and its labels other than `le`.
type SeriesKey = (String, Vec<(String, String)>);

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
    let mut series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<SeriesKey, f64> = BTreeMap::new();
    for sample in samples {
        if let Some(family) = sample.name.strip_suffix("_bucket") {
            if types.get(family).map(String::as_str) != Some("histogram") {
                continue;
            }
            let le = sample.label("le").ok_or("bucket without le")?;
            let rest: Vec<(String, String)> = sample
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .cloned()
                .collect();
            series
                .entry((family.to_string(), rest))
                .or_default()
                .push((parse_value(le)?, sample.value));
        } else if let Some(family) = sample.name.strip_suffix("_count") {
            if types.get(family).map(String::as_str) == Some("histogram") {
                counts.insert((family.to_string(), sample.labels.clone()), sample.value);
            }
        }
    }
    for (key, buckets) in &series {
        if !buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return Err(format!("{key:?}: buckets not increasing"));
        }
        let last = buckets.last().unwrap();
        if !last.0.is_infinite() || counts.get(key) != Some(&last.1) {
            return Err(format!(
                "{key:?}: +Inf bucket missing or not equal to _count"
            ));
        }
    }
    Ok(())
}

fn scrape(port: u16) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(n, v)| s.label(n) == Some(*v)))
        .map(|s| s.value)
}

fn harness_with(access_log: Value) -> Harness {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
        config["proxy"]["accessLog"] = access_log;
        config
    });
    harness.start();
    harness
}

fn access_lines(path: &Path, at_least: usize) -> Vec<String> {
    poll(PATIENCE, || {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        (lines.len() >= at_least).then_some(lines)
    })
    .unwrap_or_else(|| panic!("{at_least} access log lines in {}", path.display()))
}

#[test]
fn metrics_parse_and_move_with_requests_and_deploys() {
    let mut harness = harness_with(json!({"path": "access.log"}));
    let port = metrics_port(&harness);

    let (status, content_type, body) = scrape(port);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let before = parse_scrape(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        value(
            &before,
            "rollbridge_deploys_total",
            &[("kind", "deploy"), ("result", "success")]
        ),
        Some(0.0)
    );
    assert_eq!(harness.get("/"), (503, "No active release\n".to_string()));

    harness.deploy("v1");
    for _ in 0..5 {
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }
    assert_eq!(harness.get("/missing").0, 404);
    // A deploy that fails its health check counts as a failed deploy; a short
    // timeout for it alone keeps the test quick (the config is reloaded per deploy).
    let health_timeout = |ms: u64| {
        move |config: &mut Value| config["processes"][0]["health"]["timeoutMs"] = json!(ms)
    };
    harness.rewrite_config(health_timeout(1000));
    let error = harness.deploy_err("bad");
    assert!(error.contains("Health check failed"), "{error}");
    harness.rewrite_config(health_timeout(10_000));
    harness.deploy("v2");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));

    let body = scrape(port).2;
    let after = parse_scrape(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let requests = |release: &str, class: &str| {
        value(
            &after,
            "rollbridge_http_requests_total",
            &[("release", release), ("class", class)],
        )
    };
    assert_eq!(requests("v1", "2xx"), Some(5.0), "{body}");
    assert_eq!(requests("v1", "4xx"), Some(1.0), "{body}");
    assert_eq!(requests("v1", "5xx"), Some(0.0), "{body}");
    assert_eq!(requests("v2", "2xx"), Some(1.0), "{body}");
    assert_eq!(
        value(&after, "rollbridge_http_unrouted_requests_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_http_request_duration_seconds_count",
            &[("release", "v1")]
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_deploys_total",
            &[("kind", "deploy"), ("result", "success")]
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_deploys_total",
            &[("kind", "deploy"), ("result", "failure")]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_deploy_duration_seconds_count",
            &[("result", "success")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&after, "rollbridge_active_release", &[("release", "v2")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_http_in_flight_requests",
            &[("release", "v2")]
        ),
        Some(0.0)
    );
    assert!(
        value(
            &after,
            "rollbridge_hook_calls_total",
            &[("plugin", "http"), ("stage", "health"), ("result", "ok")]
        )
        .is_some_and(|n| n >= 2.0),
        "{body}"
    );
    let rss = value(
        &after,
        "rollbridge_process_resident_memory_bytes",
        &[("process", "web"), ("release", "v2")],
    )
    .unwrap_or_else(|| panic!("{body}"));
    assert!(rss > 1_000_000.0, "{rss}");
    assert_eq!(
        value(
            &after,
            "rollbridge_log_lines_dropped_total",
            &[("log", "daemon")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_log_lines_dropped_total",
            &[("log", "access")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after,
            "rollbridge_log_lines_dropped_total",
            &[("log", "process")]
        ),
        Some(0.0)
    );

    assert_eq!(scrape(port).0, 200);
    let mut other = TcpStream::connect(("127.0.0.1", port)).unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // The access log has one JSON line per proxied request, in order.
    let lines = access_lines(&harness.path("access.log"), 8);
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&String> = entries[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "at",
            "client",
            "method",
            "path",
            "protocol",
            "status",
            "bytes",
            "durationMs",
            "releaseId",
            "referer",
            "userAgent"
        ]
    );
    assert_eq!(entries[0]["status"], 503);
    assert_eq!(entries[0]["releaseId"], Value::Null);
    assert_eq!(entries.len(), 8, "{lines:?}");
    let v1: Vec<&Value> = entries
        .iter()
        .filter(|e| e["path"] == "/release" && e["releaseId"] == "v1")
        .collect();
    assert_eq!(v1.len(), 5);
    assert!(v1.iter().all(|e| e["status"] == 200
        && e["bytes"] == 2
        && e["client"] == "127.0.0.1"
        && e["method"] == "GET"));
    assert_eq!(entries.last().unwrap()["releaseId"], "v2");
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn combined_access_log_lines_for_proxied_requests() {
    let mut harness = harness_with(json!({"path": "combined.log", "format": "combined"}));
    harness.deploy("v1");
    let mut stream = TcpStream::connect(("127.0.0.1", harness.proxy_port)).unwrap();
    stream
        .write_all(b"GET /release?x=1 HTTP/1.1\r\nHost: app\r\nUser-Agent: probe/1.0\r\nReferer: http://ref.example/\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lines = access_lines(&harness.path("combined.log"), 1);
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.ends_with(
            "] \"GET /release?x=1 HTTP/1.1\" 200 2 \"http://ref.example/\" \"probe/1.0\""
        ),
        "{line}"
    );

    // logrotate's create mode: rename, SIGHUP, and the next request lands in
    // a new file.
    std::fs::rename(harness.path("combined.log"), harness.path("combined.log.1")).unwrap();
    harness.signal(libc::SIGHUP);
    wait_until(PATIENCE, "a new access log", || {
        let _ = http_get(harness.proxy_port, "/release");
        std::fs::read_to_string(harness.path("combined.log"))
            .is_ok_and(|text| text.contains("\"GET /release HTTP/1.1\" 200"))
    });
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    for bad in [
        "x_total 1\n",
        "# HELP x_total a\n# TYPE x_total counter\nx_total{a=\"1} 1\n",
        "# HELP x a\n# TYPE x counter\nx 1\n",
        "# HELP x_total a\n# TYPE x_total counter\nx_total -1\n",
        "# HELP h a\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP g a\n# TYPE g gauge\ny 1\n",
    ] {
        assert!(parse_scrape(bad).is_err(), "{bad}");
    }
}
