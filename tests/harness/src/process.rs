//! Ferry components as separate OS processes, for tests that kill them.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use tokio::time::Instant;

pub struct FerryProcess {
    child: Child,
    /// Stopped by its test (`kill`, `terminate`), not on its own.
    stopped: bool,
}

impl FerryProcess {
    /// `ferry dispatcher` with the test settings (short group timeouts,
    /// frequent commits). `binary` is the test's `CARGO_BIN_EXE_ferry`.
    pub fn dispatcher(binary: &str, contract: &Path, bootstrap: &str) -> Self {
        Self::dispatcher_with(binary, contract, bootstrap, 0, &[])
    }

    /// `ferry dispatcher` with the test settings, its admin server on
    /// `admin` (0: any port) and extra arguments.
    pub fn dispatcher_with(
        binary: &str,
        contract: &Path,
        bootstrap: &str,
        admin: u16,
        extra: &[&str],
    ) -> Self {
        let admin = format!("127.0.0.1:{admin}");
        let mut args = dispatcher_args(contract, bootstrap, &admin);
        args.extend_from_slice(extra);
        Self::spawn(binary, &args, &[])
    }

    /// `ferry receiver` listening on 127.0.0.1:`port`, Kafka's
    /// acknowledgement awaited for `produce_timeout` at most.
    pub fn receiver(
        binary: &str,
        contract: &Path,
        bootstrap: &str,
        port: u16,
        produce_timeout: Duration,
    ) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let timeout = produce_timeout.as_millis().to_string();
        Self::spawn(
            binary,
            &[
                "receiver",
                "--produce-timeout-ms",
                &timeout,
                "--listen",
                &listen,
                "--admin",
                "127.0.0.1:0",
                "--contract",
                contract.to_str().expect("a UTF-8 path"),
                "--contract-poll-ms",
                "200",
                "--bootstrap-servers",
                bootstrap,
            ],
            &[],
        )
    }

    /// SIGKILL: no chance to drain or commit.
    pub fn kill(mut self) {
        self.stopped = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit, without blocking the
    /// test's runtime (its subscribers must keep answering meanwhile).
    pub async fn terminate(mut self, deadline: Duration) -> ExitStatus {
        self.stopped = true;
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the process did not exit within {deadline:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn dispatcher_args<'a>(contract: &'a Path, bootstrap: &'a str, admin: &'a str) -> Vec<&'a str> {
    vec![
        "dispatcher",
        "--admin",
        admin,
        "--contract",
        contract.to_str().expect("a UTF-8 path"),
        "--bootstrap-servers",
        bootstrap,
        "--session-timeout-ms",
        "6000",
        "--heartbeat-interval-ms",
        "500",
        "--commit-interval-ms",
        "100",
        "--drain-timeout-ms",
        "5000",
    ]
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        // A process that died before its test ended (a crash leaves no log
        // line) is named in the test's output.
        if let (false, Ok(Some(status))) = (self.stopped, self.child.try_wait()) {
            eprintln!(
                "ferry process {} had exited before its test ended: {status}",
                self.child.id()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry standalone` as a process, with what it prints collected.
pub struct Standalone {
    /// Held so the process lives as long as this guard (dropping kills it).
    _process: FerryProcess,
    pub ingress: String,
    pub admin: String,
    /// The HTTPS ingress, when transport encryption is on.
    pub https_ingress: Option<String>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Standalone {
    /// Starts it on ephemeral ports and waits for its first line, which
    /// names them.
    pub async fn start(binary: &str, resources: &Path, state: &Path, bootstrap: &str) -> Self {
        Self::start_with_env(binary, resources, state, bootstrap, &[]).await
    }

    /// [`Standalone::start`] with extra environment.
    pub async fn start_with_env(
        binary: &str,
        resources: &Path,
        state: &Path,
        bootstrap: &str,
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(binary)
            .args([
                "standalone",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--resources",
            ])
            .arg(resources)
            .arg("--state-dir")
            .arg(state)
            .args([
                "--bootstrap-servers",
                bootstrap,
                "--default-partitions",
                "2",
                "--resync-ms",
                "500",
            ])
            .args([
                "--session-timeout-ms",
                "6000",
                "--heartbeat-interval-ms",
                "500",
                "--commit-interval-ms",
                "100",
                "--lag-interval-ms",
                "200",
            ])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                collected.lock().expect("lock").push(line);
            }
        });
        let process = FerryProcess {
            child,
            stopped: false,
        };
        let first = crate::eventually("standalone's first line", Duration::from_secs(30), || {
            let first = lines.lock().expect("lock").first().cloned();
            async move { first }
        })
        .await;
        // "Ferry standalone: ingress http://A, admin http://B"
        let url = |label: &str| {
            first
                .split(&format!("{label} "))
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map(str::to_owned)
        };
        Standalone {
            ingress: url("ingress").expect("address"),
            admin: url("admin").expect("address"),
            https_ingress: url("https ingress"),
            _process: process,
            lines,
        }
    }

    /// Everything it printed so far.
    pub fn printed(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }
}

impl FerryProcess {
    /// Any `ferry` subcommand, with extra environment.
    pub fn spawn(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry binary starts");
        FerryProcess {
            child,
            stopped: false,
        }
    }
}

/// The Kubernetes API emulator (tests/kmock/serve.py, on kmock from PyPI)
/// on a free loopback port, with a kubeconfig that points at it.
pub struct KubeEmulator {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl KubeEmulator {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kmock/serve.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (and kmock is installed: scripts/setup)");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the Kubernetes emulator did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
             contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n\
             current-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        KubeEmulator { child, url, dir }
    }

    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standalone {
    /// Stops it with SIGTERM, as an orchestrator would, and waits for it.
    pub async fn terminate(self, deadline: Duration) -> ExitStatus {
        self._process.terminate(deadline).await
    }

    /// `GET /resources`: every resource's status.
    pub async fn resources(&self) -> Vec<serde_json::Value> {
        resources_at(&self.admin).await
    }

    /// Waits until a resource of that kind and name has that readiness.
    pub async fn wait_for_status(&self, kind: &str, name: &str, ready: &str) -> serde_json::Value {
        crate::eventually(
            &format!("{kind} {name} {ready}"),
            Duration::from_secs(45),
            || async move {
                self.resources()
                    .await
                    .into_iter()
                    .find(|r| r["kind"] == kind && r["name"] == name && r["ready"] == ready)
            },
        )
        .await
    }

    /// Waits for `/readyz`.
    pub async fn ready(&self) {
        let client = crate::http::client();
        let url = format!("{}/readyz", self.admin);
        crate::eventually("standalone readiness", Duration::from_secs(45), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                (crate::http::request(&client, ::http::Method::GET, &url, &[], "")
                    .await
                    .status
                    == 200)
                    .then_some(())
            }
        })
        .await
    }
}

/// Writes a resource file as an editor would: a temporary file renamed over.
pub fn write_resource(dir: &Path, file: &str, yaml: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, yaml).expect("write");
    std::fs::rename(tmp, dir.join(file)).expect("rename");
}

/// `GET <admin>/resources` of a standalone: every resource's status.
pub async fn resources_at(admin: &str) -> Vec<serde_json::Value> {
    let client = crate::http::client();
    let url = format!("{admin}/resources");
    let body = crate::http::request(&client, ::http::Method::GET, &url, &[], "")
        .await
        .body;
    serde_json::from_str(&body).unwrap_or_default()
}

/// Runs `ferry ARGS` to its end with `env`; its standard output, once it
/// has succeeded.
pub fn ferry_output(binary: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("ferry runs");
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
