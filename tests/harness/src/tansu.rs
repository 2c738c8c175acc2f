//! A private Tansu broker that a test can stop and start again, on its own
//! loopback port. Needs `tansu` on PATH (scripts/test installs it).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Tansu {
    port: u16,
    /// The port metadata names (clients connect there after bootstrap):
    /// its own, or a proxy's in front of it.
    advertised: u16,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = crate::free_port();
        Tansu::start_advertising(port, port)
    }

    /// A broker on `port` that tells clients to connect to `advertised`.
    pub fn start_advertising(port: u16, advertised: u16) -> Tansu {
        let mut tansu = Tansu {
            port,
            advertised,
            child: None,
        };
        tansu.resume();
        tansu
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its in-memory data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing
    /// answers, as with a broker that hangs or a network that drops
    /// everything; its data stays.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn unpause(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("tansu is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the broker again on the same port and waits for it.
    pub fn resume(&mut self) {
        let url = |port| format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url(self.port),
                "--advertised-listener-url",
                &url(self.advertised),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "tansu on PATH (cargo install tansu --version 0.6.0 --locked --features dynostore)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
