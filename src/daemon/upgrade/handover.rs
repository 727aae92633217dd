//! The handover document: everything the next image of the daemon needs, as
//! versioned JSON in a memfd whose descriptor (named by [`HANDOVER_FD_ENV`])
//! survives `execve` together with the descriptors the document names.

use crate::daemon::bootstrap::BootstrapRequest;
use crate::daemon::orphans::Orphan;
use crate::events::EventRecord;
use crate::process::ProcessHandover;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The handover format this build writes and reads. A binary reports the one it
/// reads with `rollbridge handover-format`; an upgrade to a binary reporting
/// another is refused before anything changes.
pub const HANDOVER_FORMAT: u32 = 1;

/// What `rollbridge handover-format` prints before the number.
pub const HANDSHAKE_PREFIX: &str = "rollbridge-handover-format ";

/// The environment variable naming the memfd in the new image.
pub const HANDOVER_FD_ENV: &str = "ROLLBRIDGE_HANDOVER_FD";

/// The descriptor of the previous image's executable, also outside the
/// document: a new image that cannot even read the document can still go back.
pub const PREVIOUS_ENV: &str = "ROLLBRIDGE_HANDOVER_PREVIOUS_FD";

/// Set by a new image that could not take over and gave the daemon back to the
/// previous binary: why (the previous image answers the upgrade with it).
pub const FALLBACK_ENV: &str = "ROLLBRIDGE_HANDOVER_FALLBACK";

/// The handover document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handover {
    pub format: u32,
    /// The image that wrote the document.
    pub previous: ImageIdentity,
    /// A descriptor of the previous image's executable: the new image re-executes
    /// it when it cannot take over (the file may have been replaced on disk).
    pub previous_executable_fd: Option<RawFd>,
    pub config_path: PathBuf,
    /// The config file's text as the previous image checked it before the exec:
    /// when the new image cannot take over, the previous binary takes the
    /// daemon back with it, even if the file changed or went away meanwhile.
    #[serde(default)]
    pub config_source: Option<String>,
    /// The binary being executed, hashed before the exec (outside the pause).
    pub next: Option<FileIdentity>,
    /// When the proxy stopped accepting (ms since the epoch), to report the pause.
    pub proxy_paused_at_ms: Option<i64>,
    pub listeners: Listeners,
    /// The control connection that asked for the upgrade: answered by the image
    /// that ends up serving.
    pub requester_fd: Option<RawFd>,
    pub proxy_bound: Option<(String, u16)>,
    pub releases: Vec<ReleaseHandover>,
    pub active_release_id: Option<String>,
    pub services: Vec<NamedProcessHandover>,
    pub service_ports: Vec<(String, u16)>,
    pub singletons: Vec<NamedProcessHandover>,
    pub orphans: Vec<Orphan>,
    pub bootstrap: Option<BootstrapRequest>,
    /// The event ring, oldest first.
    pub events: Vec<EventRecord>,
    /// Upgraded connections (WebSockets), both sides and the bytes in flight.
    #[serde(default)]
    pub tunnels: Vec<TunnelHandover>,
    /// Keep-alive client connections between two requests.
    #[serde(default)]
    pub connections: Vec<RawFd>,
    /// The start of a next request some of those connections had sent, read
    /// but not yet parsed (only connections that have any; an image that does
    /// not know this field loses those bytes, nothing else).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections_unread: Vec<UnreadBytes>,
    /// The maintenance answer while maintenance is on (docs/rollouts.md): it
    /// stays on across the upgrade.
    #[serde(default)]
    pub maintenance: Option<String>,
    /// Counters and histograms of `/metrics` and `status.logging`: the new
    /// image continues them.
    #[serde(default)]
    pub counters: crate::observability::CounterSnapshot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelHandover {
    pub release_id: String,
    pub client_fd: RawFd,
    pub upstream_fd: RawFd,
    pub to_upstream: Vec<u8>,
    pub to_client: Vec<u8>,
    pub client_finished: bool,
    pub upstream_finished: bool,
}

/// Bytes read from the client connection `fd` that the next image serves first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadBytes {
    pub fd: RawFd,
    pub bytes: Vec<u8>,
}

/// A file's SHA-256 and what tells whether it is still the same file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub digest: String,
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified_ns: i128,
}

impl FileIdentity {
    /// Hashes `path` (blocking) and records its identity.
    pub fn of(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        let file = std::fs::File::open(path)?;
        let before = file.metadata()?;
        let digest = crate::daemon::runtime::digest_file(path)?;
        Ok(FileIdentity::with(digest, &before))
    }

    fn with(digest: String, metadata: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            digest,
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }

    /// The digest, when `path` is still the file that was hashed.
    pub fn digest_if_same(&self, path: &std::path::Path) -> Option<String> {
        let metadata = std::fs::metadata(path).ok()?;
        (FileIdentity::with(self.digest.clone(), &metadata) == *self).then(|| self.digest.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageIdentity {
    pub version: String,
    pub digest: String,
}

/// Listening sockets kept across `execve`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listeners {
    pub proxy: Option<RawFd>,
    pub control: Option<RawFd>,
    pub metrics: Option<RawFd>,
    /// systemd passed the control socket: its file is not the daemon's.
    #[serde(rename = "controlActivated")]
    pub control_activated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHandover {
    pub id: String,
    pub path: String,
    pub revision: String,
    pub ports: Vec<(String, u16)>,
    pub state: String,
    pub activated_at: Option<String>,
    pub drain_started_at: Option<String>,
    pub stopped_at: Option<String>,
    /// `(base id, process)` in the release's order.
    pub processes: Vec<(String, ProcessHandover)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedProcessHandover {
    pub id: String,
    /// The release whose supervision rule a singleton follows (its builder).
    #[serde(rename = "releaseId")]
    pub release_id: Option<String>,
    pub process: ProcessHandover,
}

/// Why a handover document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the handover document: {0}")]
    Io(#[from] std::io::Error),
    #[error("the handover document is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the handover document has format {found}; this binary reads format {HANDOVER_FORMAT}")]
    Format { found: u64 },
}

impl Handover {
    /// Writes the document into a new memfd (close-on-exec, like every
    /// descriptor until the exec makes the handed ones inheritable).
    pub fn to_memfd(&self) -> std::io::Result<OwnedFd> {
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let name = c"rollbridge-handover";
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
        let mut file = std::fs::File::from(fd);
        serde_json::to_writer(&mut file, self)?;
        file.flush()?;
        file.rewind()?;
        Ok(OwnedFd::from(file))
    }

    /// Every handed-over process: releases', services', singletons'.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessHandover> {
        self.releases
            .iter()
            .flat_map(|r| r.processes.iter().map(|(_, p)| p))
            .chain(self.services.iter().map(|s| &s.process))
            .chain(self.singletons.iter().map(|s| &s.process))
    }

    /// Every descriptor the document names, with what it must be.
    pub fn descriptors(&self) -> Vec<(RawFd, DescriptorKind, String)> {
        let mut named = Vec::new();
        let listeners = [
            (self.listeners.proxy, "proxy listener"),
            (self.listeners.control, "control listener"),
            (self.listeners.metrics, "metrics listener"),
        ];
        for (fd, what) in listeners {
            if let Some(fd) = fd {
                named.push((fd, DescriptorKind::Socket, what.to_string()));
            }
        }
        if let Some(fd) = self.requester_fd {
            named.push((fd, DescriptorKind::Socket, "requesting connection".into()));
        }
        for fd in &self.connections {
            named.push((*fd, DescriptorKind::Socket, "client connection".into()));
        }
        for tunnel in &self.tunnels {
            named.push((
                tunnel.client_fd,
                DescriptorKind::Socket,
                "tunnel client".into(),
            ));
            named.push((
                tunnel.upstream_fd,
                DescriptorKind::Socket,
                "tunnel upstream".into(),
            ));
        }
        for process in self.processes() {
            if let Some(child) = &process.child {
                let id = &process.definition.instance_id;
                for (fd, stream) in [(child.stdout_fd, "stdout"), (child.stderr_fd, "stderr")] {
                    if let Some(fd) = fd {
                        named.push((fd, DescriptorKind::Pipe, format!("{id} {stream}")));
                    }
                }
            }
        }
        named
    }
}

/// Reads the document from the start of its memfd (the descriptor stays open:
/// it is passed on again if the daemon goes back to the previous binary).
pub fn read_document(memfd: &OwnedFd) -> Result<Handover, ReadError> {
    let mut file = std::fs::File::from(memfd.try_clone()?);
    file.rewind()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let found = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if found != u64::from(HANDOVER_FORMAT) {
        return Err(ReadError::Format { found });
    }
    Ok(serde_json::from_value(value)?)
}

/// What a handed-over descriptor must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorKind {
    Socket,
    Pipe,
    /// The document itself (a memfd is a regular file).
    Memfd,
}

impl DescriptorKind {
    /// Whether `fd` is open and of this kind.
    pub fn matches(self, fd: RawFd) -> bool {
        if fd < 0 {
            return false;
        }
        // SAFETY: fstat only reads; an fd that is not open fails with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(stat) = nix::sys::stat::fstat(borrowed) else {
            return false;
        };
        let format = stat.st_mode & libc::S_IFMT;
        match self {
            DescriptorKind::Socket => format == libc::S_IFSOCK,
            DescriptorKind::Pipe => format == libc::S_IFIFO,
            DescriptorKind::Memfd => format == libc::S_IFREG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn empty() -> Handover {
        Handover {
            format: HANDOVER_FORMAT,
            previous: ImageIdentity {
                version: "0.2.0".into(),
                digest: "ab".into(),
            },
            previous_executable_fd: None,
            config_path: "/etc/app/rollbridge.json".into(),
            config_source: None,
            next: None,
            proxy_paused_at_ms: None,
            listeners: Listeners::default(),
            requester_fd: None,
            proxy_bound: Some(("127.0.0.1".into(), 8080)),
            releases: Vec::new(),
            active_release_id: None,
            services: Vec::new(),
            service_ports: Vec::new(),
            singletons: Vec::new(),
            orphans: Vec::new(),
            bootstrap: None,
            events: Vec::new(),
            tunnels: Vec::new(),
            connections: vec![7],
            connections_unread: vec![UnreadBytes {
                fd: 7,
                bytes: b"GET / HTTP/1.1\r\nHo".to_vec(),
            }],
            maintenance: Some("Back at 10:00\n".into()),
            counters: Default::default(),
        }
    }

    #[test]
    fn a_document_round_trips_through_a_memfd() {
        let document = empty();
        let fd = document.to_memfd().unwrap();
        assert!(DescriptorKind::Memfd.matches(fd.as_raw_fd()));
        assert_eq!(read_document(&fd).unwrap(), document);
        // Read again from the start (a fallback passes the same memfd on).
        assert_eq!(read_document(&fd).unwrap(), document);
    }

    #[test]
    fn a_document_without_counters_still_loads() {
        let mut value = serde_json::to_value(empty()).unwrap();
        value.as_object_mut().unwrap().remove("counters");
        let document: Handover = serde_json::from_value(value).unwrap();
        assert_eq!(document, empty());
    }

    #[test]
    fn another_format_is_refused() {
        let mut document = empty();
        document.format = HANDOVER_FORMAT + 1;
        let fd = document.to_memfd().unwrap();
        let error = read_document(&fd).unwrap_err();
        assert!(
            matches!(error, ReadError::Format { found } if found == u64::from(HANDOVER_FORMAT) + 1)
        );
    }

    #[test]
    fn descriptor_kinds_are_told_apart() {
        let (read, _write) = nix::unistd::pipe().unwrap();
        assert!(DescriptorKind::Pipe.matches(read.as_raw_fd()));
        assert!(!DescriptorKind::Socket.matches(read.as_raw_fd()));
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(DescriptorKind::Socket.matches(socket.as_raw_fd()));
    }
}
