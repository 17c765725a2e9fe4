//! The real binary as a server process: started with a config file, signalled, killed on
//! drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;

use crate::server::config_text;
use crate::support::*;

/// A free port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub admin: String,
    pub config: PathBuf,
}

impl ServerProcess {
    /// Writes the test configuration (see `server::config_text`) with fixed ports into
    /// `file` under the scratch directory, starts `tenant-edge serve`, waits for /readyz.
    pub async fn start(scratch: &Scratch, file: &str, extra: &str) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let text = config_text(scratch, extra)
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
                1,
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{admin_port}\""),
                1,
            );
        let config = scratch.dir.join(file);
        std::fs::write(&config, text).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            config,
        };
        process.wait_ready().await;
        process
    }

    pub async fn wait_ready(&self) {
        let client = http_client();
        wait_for(
            "the server process to be ready",
            Duration::from_secs(30),
            || async {
                let (status, _, _) = get(&client, &format!("{}/readyz", self.base), &[]).await?;
                (status == 200).then_some(())
            },
        )
        .await;
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit code (within `deadline`).
    pub async fn terminate(mut self, deadline: Duration) -> Option<i32> {
        self.signal("TERM");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > deadline {
                panic!("server did not exit within {deadline:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// A GET; None when the connection fails.
pub async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, http::HeaderMap, Vec<u8>)> {
    use http_body_util::BodyExt;
    let mut builder = http::Request::builder().method(Method::GET).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(http_body_util::Full::default()).unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes()
        .to_vec();
    Some((status, headers, body))
}

/// Status of GET /api/lunch-week with `token` against `base`.
pub async fn lunch_weeks_status(client: &HttpClient, base: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    get(
        client,
        &format!("{base}/api/lunch-week"),
        &[("authorization", &auth)],
    )
    .await
    .map_or(0, |(status, _, _)| status)
}
