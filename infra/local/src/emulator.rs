//! The AWS-protocol emulator: moto's server, pinned in the project's virtualenv, with its
//! request handling serialised (see `moto_serial.py`).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root, where `template.yaml`, `config/` and `.venv/` live.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The Python with moto installed: `LEADFLOW_PYTHON`, or the project's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("LEADFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running moto server; stopped when dropped, and by itself when its parent exits.
pub struct Emulator {
    pub endpoint: String,
    child: Child,
}

impl Emulator {
    pub fn start() -> io::Result<Self> {
        Self::start_on(free_port()?)
    }

    /// For tests: items leave the emulator's cache of built items after every few requests, so
    /// every test also proves that items written back to JSON and built again are the same.
    pub fn start_with_tiny_cache() -> io::Result<Self> {
        Self::spawn(free_port()?, Some(16))
    }

    pub fn start_on(port: u16) -> io::Result<Self> {
        Self::spawn(port, None)
    }

    fn spawn(port: u16, cache_items: Option<usize>) -> io::Result<Self> {
        let py = python();
        if !py.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: run scripts/setup.sh (or set LEADFLOW_PYTHON)",
                    py.display()
                ),
            ));
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("port {port} is in use (is another leadflow-local running?)"),
            ));
        }
        let script = workspace_root().join("infra/local/moto_serial.py");
        let mut command = Command::new(py);
        command.arg(script).args(["--port", &port.to_string(), "--watch-stdin"]);
        if let Some(n) = cache_items {
            command.args(["--cache-items", &n.to_string()]);
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut emulator = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = emulator.child.try_wait()? {
                return Err(io::Error::other(format!("moto exited at start-up: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "moto did not start within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(emulator)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
