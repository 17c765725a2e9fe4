//! The real binary as a process: started with a config file, its output read line by
//! line, signalled, killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::server::{config_text, http_client, send, HttpClient};
use crate::support::*;

/// The tenant-edge binary running `serve`, with the test configuration of
/// `server::config_text` (RS256 through the fixture JWKS and HS256).
pub struct ServerProcess {
    pub process: Process,
    pub base: String,
    pub config: PathBuf,
}

impl ServerProcess {
    /// Writes the configuration (`extra` as in `config_text`) into `file` under the
    /// scratch directory, starts `tenant-edge serve` on port 0 and waits for /readyz.
    pub async fn start(scratch: &Scratch, file: &str, extra: &str) -> Self {
        let text = config_text(scratch, extra)
            // The "listening" line, at info in JSON, says which port it got.
            .replace(
                "[log]\nlevel = \"warn\"\n",
                "[log]\nlevel = \"info\"\nformat = \"json\"\n",
            )
            // The admin listener is not needed here.
            .replace("[admin]\nlisten = \"127.0.0.1:0\"\n", "[admin]\n");
        let config = scratch.dir.join(file);
        std::fs::write(&config, text).unwrap();
        let mut process = Process::spawn(scratch, &config, &["serve"]);
        let base = process.listening_address().await;
        let server = Self {
            process,
            base,
            config,
        };
        let client = http_client();
        wait_for(
            "the server process to be ready",
            Duration::from_secs(30),
            || async {
                let (status, _, _) = send(
                    &client,
                    Method::GET,
                    &format!("{}/readyz", server.base),
                    &[],
                    None,
                )
                .await?;
                (status == 200).then_some(())
            },
        )
        .await;
        server
    }

    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// SIGTERM, then the exit code (within `deadline`).
    pub async fn terminate(mut self, deadline: Duration) -> i32 {
        self.process.signal("TERM");
        self.process.exit_code(deadline).await
    }
}

pub struct Process {
    pub child: Child,
    pub stdout: mpsc::UnboundedReceiver<String>,
    pub stderr: mpsc::UnboundedReceiver<String>,
}

impl Process {
    pub fn spawn(scratch: &Scratch, config: &Path, args: &[&str]) -> Process {
        let mut command = Command::new(BIN);
        command.arg("--config").arg(config).args(args);
        Self::start(scratch, command)
    }

    /// `serve` with at most `fd_limit` open file descriptors (`ulimit -n`).
    pub fn spawn_with_fd_limit(scratch: &Scratch, config: &Path, fd_limit: u32) -> Process {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {fd_limit} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .arg("--config")
            .arg(config)
            .arg("serve");
        Self::start(scratch, command)
    }

    pub fn start(scratch: &Scratch, mut command: Command) -> Process {
        let mut child = command
            .current_dir(&scratch.dir)
            .env_remove("TENANT_EDGE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tenant-edge");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Process {
            child,
            stdout,
            stderr,
        }
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// The main listener's address, from the JSON "tenant-edge listening" log line.
    pub async fn listening_address(&mut self) -> String {
        let deadline = Duration::from_secs(20);
        let line = next_line_matching(&mut self.stderr, deadline, |l| {
            l.contains("tenant-edge listening")
        })
        .await;
        let json: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        format!("http://{}", json["address"].as_str().unwrap())
    }

    /// Waits for the exit within `deadline`; the exit code.
    pub async fn exit_code(&mut self, deadline: Duration) -> i32 {
        let status = tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("tenant-edge did not exit within {deadline:?}"))
            .unwrap();
        status.code().expect("exited, not killed by a signal")
    }
}

pub fn lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub async fn next_line_matching(
    rx: &mut mpsc::UnboundedReceiver<String>,
    deadline: Duration,
    mut matches: impl FnMut(&str) -> bool,
) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(deadline, async {
        while let Some(line) = rx.recv().await {
            if matches(&line) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no matching output line; saw:\n{}", seen.join("\n")),
    }
}

/// Status of GET /api/lunch-week with `token` against `base`.
pub async fn lunch_weeks_status(client: &HttpClient, base: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    let url = format!("{base}/api/lunch-week");
    send(client, Method::GET, &url, &[("authorization", &auth)], None)
        .await
        .map_or(0, |(status, _, _)| status)
}

#[test]
fn the_token_command_refuses_when_the_server_would_reject_its_token() {
    let scratch = Scratch::new();
    let auth = |algorithms: &str| {
        format!(
            "[auth]\nalgorithms = {algorithms}\nhs256_secret = \"{}\"\njwks_file = \"jwks.json\"\n",
            crate::server::HS_SECRET
        )
    };
    let args = ["token", "--school", "school_a"];

    let config = scratch.write_config(&auth("[\"RS256\"]"));
    let output = scratch.run(&config, &args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "no token is printed");
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "{}: key `auth.algorithms`: does not list \"HS256\"",
            config.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("rejects every development token"),
        "{message}"
    );

    let config = scratch.write_config(&auth("[\"RS256\", \"HS256\"]"));
    let output = scratch.run(&config, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
}
