//! Port allocation for a release: every configured process with a
//! `port` gets one, probed by binding it on the upstream host.
//!
//! Probing is check-then-release: the process binds the port a moment later.
//! Deploys run one at a time, so two deploys never race each other for a port,
//! and ports given to releases that still run are never handed out again even
//! when their process has not bound them yet; an unrelated program could still
//! take a port in between.

use super::errors::PortError;
use crate::config::model::{Config, PortRange};
use crate::util::errno::errno_code;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};

/// Allocates the release's ports, keyed by base process id in config order.
/// Persistent services that already run keep the port in `service_ports`;
/// `held` are the ports of this daemon's other live releases, counted as in use.
pub fn allocate(
    config: &Config,
    service_ports: &HashMap<String, u16>,
    held: &HashSet<u16>,
) -> Result<Vec<(String, u16)>, PortError> {
    let host = config.proxy.upstream_host.as_str();
    let mut used: HashSet<u16> = HashSet::new();
    let mut ports = Vec::new();
    for process in &config.processes {
        let Some(range) = process.port else { continue };
        if process.is_persistent_service() {
            if let Some(&port) = service_ports.get(&process.id) {
                used.insert(port);
                ports.push((process.id.clone(), port));
                continue;
            }
        }
        let port = find_port(host, range, &used, held)?;
        used.insert(port);
        ports.push((process.id.clone(), port));
    }
    Ok(ports)
}

/// How often the kernel may hand out an ephemeral port that one of our own
/// releases was given but has not bound yet before we give up asking.
const EPHEMERAL_ATTEMPTS: usize = 32;

fn find_port(
    host: &str,
    range: PortRange,
    used: &HashSet<u16>,
    held: &HashSet<u16>,
) -> Result<u16, PortError> {
    if range.is_ephemeral() {
        let mut port = 0;
        for _ in 0..EPHEMERAL_ATTEMPTS {
            port = probe(host, 0).map_err(|error| PortError::Ephemeral {
                host: host.to_string(),
                code: errno_code(&error).unwrap_or_else(|| error.to_string()),
            })?;
            if !used.contains(&port) && !held.contains(&port) {
                break;
            }
        }
        return Ok(port);
    }
    let (mut reserved, mut in_use, mut unavailable) = (0u32, 0u32, 0u32);
    let mut example_code: Option<String> = None;
    for port in range.from..=range.to {
        if used.contains(&port) {
            reserved += 1;
            continue;
        }
        if held.contains(&port) {
            in_use += 1;
            continue;
        }
        match probe(host, port) {
            Ok(port) => return Ok(port),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => in_use += 1,
            Err(error) => {
                unavailable += 1;
                if example_code.is_none() {
                    example_code = Some(errno_code(&error).unwrap_or_else(|| error.to_string()));
                }
            }
        }
    }
    Err(PortError::Exhausted {
        from: range.from,
        to: range.to,
        count: u32::from(range.to - range.from) + 1,
        host: host.to_string(),
        reserved,
        in_use,
        unavailable,
        example_code,
    })
}

/// Binds `host:port` and closes it again; returns the port that was bound.
fn probe(host: &str, port: u16) -> io::Result<u16> {
    let address = resolve(host, port)?;
    let listener = TcpListener::bind(address)?;
    Ok(listener.local_addr()?.port())
}

/// Resolves the upstream host, which may be an IPv4 or IPv6 literal (with or
/// without brackets) or a name.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let bare = crate::util::host::unbracketed(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (bare, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} does not resolve to an address"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: u16, to: u16) -> PortRange {
        PortRange { from, to }
    }

    #[test]
    fn ephemeral_ports_come_from_the_kernel() {
        let port = find_port("127.0.0.1", range(0, 0), &HashSet::new(), &HashSet::new()).unwrap();
        assert_ne!(port, 0);
        let port = find_port("::1", range(0, 0), &HashSet::new(), &HashSet::new());
        // IPv6 loopback may be disabled in some sandboxes; when it works it is real.
        if let Ok(port) = port {
            assert_ne!(port, 0);
        }
    }

    #[test]
    fn skips_reserved_and_busy_ports_and_explains_exhaustion() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let error = find_port(
            "127.0.0.1",
            range(busy, busy),
            &HashSet::new(),
            &HashSet::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            format!(
                "No available ports in range {busy}-{busy} (1 port on 127.0.0.1): 0 reserved by this deploy, 1 already in use. Widen the port range, free a port, or check bind permissions."
            )
        );
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let free_port = free.local_addr().unwrap().port();
        drop(free);
        let used: HashSet<u16> = [free_port].into();
        let error = find_port(
            "127.0.0.1",
            range(free_port, free_port),
            &used,
            &HashSet::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("(1 port on 127.0.0.1): 1 reserved by this deploy, 0 already in use."),
            "{error}"
        );
    }

    #[test]
    fn unbindable_hosts_report_a_code() {
        // 192.0.2.1 (TEST-NET-1) is not a local address: EADDRNOTAVAIL.
        let error = find_port(
            "192.0.2.1",
            range(18000, 18001),
            &HashSet::new(),
            &HashSet::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("(2 ports on 192.0.2.1)"), "{error}");
        assert!(
            error.contains("2 could not be bound (e.g. EADDRNOTAVAIL)"),
            "{error}"
        );
        let error = find_port("192.0.2.1", range(0, 0), &HashSet::new(), &HashSet::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "Unable to allocate an ephemeral port on 192.0.2.1 (EADDRNOTAVAIL)"
        );
    }
}
