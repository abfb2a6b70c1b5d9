//! A Lambda Runtime API emulator: each function's real `bootstrap` binary runs as its own
//! process and pulls its invocations from `/2018-06-01/runtime/invocation/next`, exactly as on
//! Lambda. Also measures each function's init time (process start → first request for work)
//! and peak memory.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Value, Value>>;

struct Invocation {
    event: Value,
    deadline: Duration,
    reply: Reply,
    /// Told when a process takes the invocation: its timeout runs from then.
    taken: oneshot::Sender<()>,
}

struct State {
    function: String,
    next: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, Reply>>,
    started: Instant,
    init: Mutex<Option<Duration>>,
    init_error: Mutex<Option<String>>,
}

/// A function's process and the queue of its invocations.
pub struct Function {
    pub name: String,
    queue: mpsc::Sender<Invocation>,
    state: Arc<State>,
    child: Child,
    pub timeout: Duration,
    /// The newest metric lines (EMF) the function printed, as CloudWatch Logs would take them.
    metrics: Arc<Mutex<std::collections::VecDeque<String>>>,
}

/// What a wait on the function's process came to, when it did not get its answer.
enum Waited {
    /// The process exited (crashed, killed): nothing will come.
    Exited,
    /// The limit passed.
    TooLong,
}

/// Metric lines kept per function (the newest).
const METRIC_LINES: usize = 1000;

/// Where the functions' binaries are: `LEADFLOW_BIN_DIR`, or the workspace's `target/debug`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("LEADFLOW_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::workspace_root().join("target"))
                .join("debug")
        })
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn serve_api(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches("/2018-06-01/runtime/").split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["invocation", "next"]) => {
            state
                .init
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| state.started.elapsed());
            let Some(inv) = state.next.lock().await.recv().await else {
                return respond(StatusCode::GONE, "shutting down");
            };
            let id = uuid::Uuid::new_v4().to_string();
            let deadline = (std::time::SystemTime::now() + inv.deadline)
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            state
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), inv.reply);
            let _ = inv.taken.send(());
            let mut r = respond(StatusCode::OK, inv.event.to_string());
            let h = r.headers_mut();
            let arn = format!(
                "arn:aws:lambda:{}:123456789012:function:{}",
                crate::REGION,
                state.function
            );
            for (k, v) in [
                ("lambda-runtime-aws-request-id", id.as_str()),
                ("lambda-runtime-deadline-ms", &deadline.to_string()),
                ("lambda-runtime-invoked-function-arn", &arn),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000;Sampled=0",
                ),
                ("content-type", "application/json"),
            ] {
                if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
                    h.insert(k, v);
                }
            }
            r
        }
        ("POST", ["invocation", id, outcome @ ("response" | "error")]) => {
            let value: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            if let Some(reply) = state.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(*id) {
                let _ = reply.send(if *outcome == "response" { Ok(value) } else { Err(value) });
            }
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        ("POST", ["init", "error"]) => {
            *state.init_error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(String::from_utf8_lossy(&body).into_owned());
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => respond(StatusCode::NOT_FOUND, "unknown runtime API path"),
    }
}

impl Function {
    /// Starts `binary` under its own Runtime API, with exactly `env` (plus the runtime's own
    /// variables): nothing of the caller's environment, so no real AWS credentials leak in.
    pub async fn start(
        name: &str,
        binary: &Path,
        env: &BTreeMap<String, String>,
        endpoint: &str,
        timeout: Duration,
    ) -> std::io::Result<Function> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (queue, rx) = mpsc::channel(64);
        let state = Arc::new(State {
            function: name.to_owned(),
            next: tokio::sync::Mutex::new(rx),
            pending: Mutex::default(),
            started: Instant::now(),
            init: Mutex::default(),
            init_error: Mutex::default(),
        });
        let server_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = server_state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(serve_api(st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_REGION", crate::REGION)
            .env("AWS_DEFAULT_REGION", crate::REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let echo = std::env::var_os("LEADFLOW_FUNCTION_LOGS").is_some();
        cmd.stdout(Stdio::piped());
        if !echo {
            cmd.stderr(Stdio::null());
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: {e} (build the functions: cargo build --bins)", binary.display()),
            )
        })?;
        // Standard output is the function's log stream: metric lines are kept, the rest echoed
        // with LEADFLOW_FUNCTION_LOGS.
        let metrics: Arc<Mutex<std::collections::VecDeque<String>>> = Arc::default();
        if let Some(out) = child.stdout.take() {
            let kept = metrics.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("\"_aws\"") {
                        let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                        if k.len() == METRIC_LINES {
                            k.pop_front();
                        }
                        k.push_back(line.clone());
                    }
                    if echo {
                        println!("{line}");
                    }
                }
            });
        }
        Ok(Function {
            name: name.to_owned(),
            queue,
            state,
            child,
            timeout,
            metrics,
        })
    }

    /// Invokes the function and waits for its answer (`Err`: the function reported an error).
    /// The function's timeout runs from when its process takes the invocation: waiting for the
    /// process to finish an earlier one (a scheduled run, say) is not the function's time — on
    /// Lambda another environment would have taken it.
    pub async fn invoke(&self, event: Value) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        let (taken, started) = oneshot::channel();
        // Ahead of it: the invocations queued and the one the process may be running, each at
        // most its timeout (and the 5 s its caller allows more).
        let ahead = (self.queue.max_capacity() - self.queue.capacity()) as u32 + 1;
        let allowed = self.timeout + Duration::from_secs(5);
        self.queue
            .send(Invocation {
                event,
                deadline: self.timeout,
                reply,
                taken,
            })
            .await
            .map_err(|_| format!("{} is not running", self.name))?;
        match self.while_running(started, allowed * ahead).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(Waited::Exited) => return Err(format!("{} is not running", self.name)),
            Err(Waited::TooLong) => {
                return Err(format!(
                    "{} took no invocation in {:?}: hung",
                    self.name,
                    allowed * ahead
                ))
            }
        }
        match self.while_running(answer, allowed).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(_)) => Err(format!("{} dropped the invocation", self.name)),
            Err(Waited::Exited) => Err(format!("{} exited during the invocation", self.name)),
            Err(Waited::TooLong) => Err(format!("{} timed out", self.name)),
        }
    }

    /// Waits for `what` up to `limit`, and no longer than the function's process lives.
    async fn while_running<T>(
        &self,
        what: oneshot::Receiver<T>,
        limit: Duration,
    ) -> Result<Result<T, oneshot::error::RecvError>, Waited> {
        let until = tokio::time::Instant::now() + limit;
        tokio::pin!(what);
        loop {
            tokio::select! {
                got = &mut what => return Ok(got),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if !self.running() {
                        return Err(Waited::Exited);
                    }
                    if tokio::time::Instant::now() >= until {
                        return Err(Waited::TooLong);
                    }
                }
            }
        }
    }

    /// Whether the function's process is still there (an exited one stays a zombie, state `Z`,
    /// until reaped).
    fn running(&self) -> bool {
        let Some(pid) = self.child.id() else { return false };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => !std::path::Path::new("/proc/self/stat").exists(),
        }
    }

    /// The metric lines (EMF) the function printed so far (the newest 1000).
    pub fn metric_lines(&self) -> Vec<String> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Process start to its first request for work, once it has made it.
    pub fn init_time(&self) -> Option<Duration> {
        *self.state.init.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn init_error(&self) -> Option<String> {
        self.state.init_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Peak resident memory of the function's process so far, in KiB (Linux `VmHWM`).
    pub fn peak_memory_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits until the function has asked for work (its init is done), up to `limit`.
    pub async fn ready(&self, limit: Duration) -> Result<Duration, String> {
        let until = Instant::now() + limit;
        loop {
            if let Some(t) = self.init_time() {
                return Ok(t);
            }
            if let Some(e) = self.init_error() {
                return Err(format!("{}: init error {e}", self.name));
            }
            if Instant::now() > until {
                return Err(format!("{} did not start within {limit:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function whose bootstrap is a Python script after the runtime API's address (`api`),
    /// started and ready; its directory is removed when the guard drops.
    async fn fake_function(name: &str, body: &str, timeout: Duration) -> (Function, TempDir) {
        let dir = TempDir(std::env::temp_dir().join(format!("leadflow-runtime-{}", uuid::Uuid::new_v4().simple())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let script = dir.0.join("bootstrap");
        let header = "#!/usr/bin/env python3\nimport os, time, urllib.request\n\
            api = \"http://\" + os.environ[\"AWS_LAMBDA_RUNTIME_API\"] + \"/2018-06-01/runtime/invocation/\"\n";
        std::fs::write(&script, format!("{header}{body}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = Function::start(name, &script, &BTreeMap::new(), "http://127.0.0.1:9", timeout)
            .await
            .unwrap();
        f.ready(Duration::from_secs(20)).await.unwrap();
        (f, dir)
    }

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A function whose process takes 4 s per invocation, under a 1 s timeout (its caller waits
    /// the timeout and 5 s more): the second of two invocations at once waits 4 s for the
    /// process, then runs 4 s. Counted from the queue that was 8 s and "timed out"; counted from
    /// when the process takes it, as Lambda counts, it is answered.
    #[tokio::test]
    async fn the_timeout_runs_from_when_a_process_takes_the_invocation() {
        let (f, _dir) = fake_function(
            "Slow",
            "while True:\n\
             \x20   with urllib.request.urlopen(api + \"next\") as r:\n\
             \x20       rid, body = r.headers[\"lambda-runtime-aws-request-id\"], r.read()\n\
             \x20   time.sleep(4)\n\
             \x20   urllib.request.urlopen(urllib.request.Request(api + rid + \"/response\", data=body, method=\"POST\")).read()\n",
            Duration::from_secs(1),
        )
        .await;
        let started = Instant::now();
        let (a, b) = tokio::join!(
            f.invoke(serde_json::json!({"n": 1})),
            f.invoke(serde_json::json!({"n": 2}))
        );
        assert_eq!(a.unwrap()["n"], 1);
        assert_eq!(
            b.unwrap()["n"],
            2,
            "answered, not timed out while it waited for the process"
        );
        assert!(
            started.elapsed() >= Duration::from_secs(8),
            "one process: one after the other"
        );
    }

    /// A function whose process dies on its first invocation: the caller behind it is told at
    /// once, not after waiting out the invocations ahead of it.
    #[tokio::test]
    async fn a_process_that_exits_fails_its_callers_at_once() {
        let (f, _dir) = fake_function(
            "Crash",
            "urllib.request.urlopen(api + \"next\").read()\nos._exit(3)\n",
            Duration::from_secs(30),
        )
        .await;
        let started = Instant::now();
        let (a, b) = tokio::join!(
            f.invoke(serde_json::json!({"n": 1})),
            f.invoke(serde_json::json!({"n": 2}))
        );
        assert_eq!(a.unwrap_err(), "Crash exited during the invocation");
        assert_eq!(b.unwrap_err(), "Crash is not running");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "told within a second or two, not after the 35 s timeouts: {:?}",
            started.elapsed()
        );
    }
}
