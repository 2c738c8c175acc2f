//! A ContainerSource without Kubernetes: its first container's command and
//! args run as a local process with the template's `env` plus `K_SINK` and
//! `K_CE_OVERRIDES` (and the process's own environment, so `PATH` finds
//! the program), restarted with backoff when it exits, its output in the
//! log, stopped when the source is deleted or Ferry stops. The image is
//! not used.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{keeper, WorkRx};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long was healthy: its next restart is quick.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// One ContainerSource's process, as planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub namespace: String,
    pub name: String,
    /// The command, then its args, with `$(VAR)` expanded.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Container {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Kubernetes' expansion of `$(VAR)` in a container's command and args:
/// a variable of its `env` is replaced, `$$` is a literal `$`, and a
/// reference to an unknown variable stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
        {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Keeps one process per ContainerSource of the current work until `stop`.
pub async fn run(work: WorkRx, stop: CancellationToken) {
    keeper::keep(
        work,
        |w| &w.containers,
        Container::key,
        |container, token| tokio::spawn(supervise(container, token)),
        stop,
    )
    .await;
}

/// Runs the process, again and again, until `stop`.
async fn supervise(container: Container, stop: CancellationToken) {
    let key = container.key();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        match spawn(&container) {
            Ok(mut child) => {
                tracing::info!(source = %key, pid = child.id(), "ContainerSource process started");
                tokio::select! {
                    _ = stop.cancelled() => {
                        kill_group(&mut child).await;
                        tracing::info!(source = %key, "ContainerSource process stopped");
                        return;
                    }
                    status = child.wait() => {
                        kill_group(&mut child).await;
                        tracing::warn!(source = %key, status = ?status.ok(), "ContainerSource process exited; restarting");
                    }
                }
            }
            Err(error) => {
                tracing::error!(source = %key, program = %container.argv[0], %error, "cannot start the ContainerSource's command");
            }
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(container: &Container) -> std::io::Result<Child> {
    let mut child = Command::new(&container.argv[0])
        .args(&container.argv[1..])
        .envs(container.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that stopping it stops what it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let key = container.key();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(key.clone(), "stdout", out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(key, "stderr", err));
    }
    Ok(child)
}

async fn log_lines(key: String, stream: &'static str, from: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(source = %key, stream, "{line}");
    }
}

/// Ends the process and its group (a shell's children too).
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .status()
            .await;
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parens_expand_as_kubernetes_expands_them() {
        let env = vec![
            ("K_SINK".to_owned(), "http://sink/".to_owned()),
            ("N".to_owned(), "1".to_owned()),
        ];
        let cases = [
            ("$(K_SINK)", "http://sink/"),
            ("to=$(K_SINK)&n=$(N)", "to=http://sink/&n=1"),
            ("$$(K_SINK)", "$(K_SINK)"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$K_SINK", "$K_SINK"),
            ("cost: 5$", "cost: 5$"),
            ("$(unclosed", "$(unclosed"),
        ];
        for (text, want) in cases {
            assert_eq!(expand(text, &env), want, "{text}");
        }
    }
}
