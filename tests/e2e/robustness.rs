//! Raw-HTTP robustness: thousands of generated and mutated request heads and bodies sent
//! over plain TCP to the real binary. Each must be answered below 500 (a 4xx for what is
//! malformed) or closed, within the header timeout plus the request timeout; afterwards
//! the process must still serve, and its resident memory must be back near its idle level.
//!
//! The corpus comes from a fixed seed (`SEED`), so a failure names its case number and
//! reproduces: `cargo test --test e2e robustness -- --nocapture` prints the failing bytes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::process::{lunch_weeks_status, ServerProcess};
use crate::server::{http_client, token_for};
use crate::support::*;

const SEED: u64 = 0x7e57_ed9e_2024_0016;
const CASES: usize = 3_000;
const CONCURRENCY: usize = 16;
/// `[server] header_read_timeout` and `request_timeout` below: no answer may take longer
/// than both together, plus slack for a machine shared with builds.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const CASE_DEADLINE: Duration = HEADER_TIMEOUT
    .saturating_add(REQUEST_TIMEOUT)
    .saturating_add(Duration::from_secs(3));
/// How far above its idle level the resident set may stay once every connection is gone.
/// Generous on purpose: mimalloc keeps freed pages of each worker thread's heap for reuse
/// rather than returning them at once, the access log's buffer and the school's pool grew
/// during the run, and the kernel counts pages touched by the run's peak of 16 concurrent
/// connections (each up to `max_header_bytes` of head buffer). A leak of one request's
/// head per case (3,000 x 16 KiB = 47 MiB) still exceeds it.
const RSS_MARGIN_KIB: u64 = 24 * 1024;

/// A small deterministic generator (xorshift64*), so the corpus does not depend on a
/// crate's stream staying the same across versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One connection's worth of input: chunks written one by one, then either the write
/// side closed (the server sees EOF) or left open (the server's timeouts must end it).
#[derive(Debug)]
struct Case {
    chunks: Vec<Vec<u8>>,
    close_write: bool,
}

/// Well-formed requests the generators start from or mutate.
fn valid_requests(token: &str) -> Vec<Vec<u8>> {
    let auth = format!("Authorization: Bearer {token}\r\n");
    let week = br#"{"weekOf":"2020-11-16","isPublished":false}"#;
    vec![
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!("GET /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}\r\n").into_bytes(),
        [
            format!(
                "POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                week.len()
            )
            .as_bytes(),
            week,
        ]
        .concat(),
        [
            format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
            format!("{:x}\r\n", week.len()).as_bytes(),
            week,
            b"\r\n0\r\n\r\n",
        ]
        .concat(),
        b"GET /api/lunch-week-public/nope/2020-11-16 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!("DELETE /api/lunch-week/1/lunch-day/1 HTTP/1.1\r\nHost: x\r\n{auth}\r\n")
            .into_bytes(),
    ]
}

/// A request head with a chosen defect.
fn bad_head(rng: &mut Rng, token: &str) -> Vec<u8> {
    let auth = format!("Authorization: Bearer {token}\r\n");
    let long = |n: usize| "a".repeat(n);
    let heads: Vec<String> = vec![
        // Methods.
        "get /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        format!("{} /healthz HTTP/1.1\r\nHost: x\r\n\r\n", long(9_000)),
        "G\0T /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        "BREW /api/lunch-week HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        " GET /healthz HTTP/1.1\r\n\r\n".into(),
        // Request lines.
        "GET /healthz\r\n\r\n".into(),
        "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".into(),
        "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".into(),
        "GET  /healthz  HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        "GET http://x/healthz HTTP/1.1\r\nHost: y\r\n\r\n".into(),
        "GET * HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n".into(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", long(70_000)),
        "GET /api/lunch-week/\0 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        "GET /api/lunch-week/%00%ff HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        "\r\n\r\n\r\n".into(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(),
        // Headers.
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", long(20_000)),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..100).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
        ),
        "GET /healthz HTTP/1.1\r\nHost x\r\n\r\n".into(),
        "GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n".into(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n".into(),
        "GET /healthz HTTP/1.1\r\nHost: x\0y\r\n\r\n".into(),
        "GET /healthz HTTP/1.1\nHost: x\n\n".into(),
        "GET /healthz HTTP/1.1\rHost: x\r\r".into(),
        format!("GET /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}{auth}\r\n"),
        "GET /api/lunch-week HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \0\r\n\r\n".into(),
        "GET /api/lunch-week HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\n\r\n".into(),
        // Framing.
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 6\r\n\r\n{{}}   "),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: -1\r\n\r\n{{}}"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: abc\r\n\r\n{{}}"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 99999999999999999999999\r\n\r\n{{}}"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000000000\r\n\r\n{{}}"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100000\r\n\r\n{}", long(100_000)),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: gzip\r\n\r\n{{}}"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n-1\r\n{{}}\r\n0\r\n\r\n"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n{{}}\r\n0\r\n\r\n"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n2;{}\r\n{{}}\r\n0\r\n\r\n", long(10_000)),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}0\r\n\r\n"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n20000\r\n{}\r\n0\r\n\r\n", long(0x20000)),
        // Bodies.
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\n\r\n\0\0\0\0"),
        format!("POST /api/lunch-week HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 3\r\n\r\n{{\"a"),
    ];
    let mut head = rng.pick(&heads).clone().into_bytes();
    if rng.chance(20) {
        // Invalid UTF-8 in the path, the headers or the body.
        let at = rng.below(head.len());
        head.insert(at, *rng.pick(&[0xff, 0xc0, 0x80, 0xfe]));
    }
    head
}

/// A valid request changed a few bytes at a time: flipped, inserted, deleted, repeated.
fn mutated(rng: &mut Rng, valid: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = rng.pick(valid).clone();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = *rng.pick(&[0, b'\r', b'\n', b':', b' ', 0xff, b'\t', b'%']),
            2 => bytes.insert(at, rng.next() as u8),
            3 => {
                bytes.remove(at);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                let slice = bytes[at..end].to_vec();
                bytes.splice(at..at, slice);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Splits `bytes` at random points into up to eight chunks (split heads, split chunk
/// sizes, a CRLF torn in two).
fn split(rng: &mut Rng, bytes: Vec<u8>) -> Vec<Vec<u8>> {
    if bytes.len() < 2 || !rng.chance(30) {
        return vec![bytes];
    }
    let mut cuts: Vec<usize> = (0..1 + rng.below(7))
        .map(|_| 1 + rng.below(bytes.len() - 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

fn generate(rng: &mut Rng, token: &str) -> Case {
    let valid = valid_requests(token);
    let bytes = match rng.below(10) {
        0..=2 => bad_head(rng, token),
        3..=6 => mutated(rng, &valid),
        // Pipelined: a valid request, then garbage or another bad request.
        7 => {
            let mut bytes = rng.pick(&valid).clone();
            if rng.chance(50) {
                let len = 1 + rng.below(512);
                bytes.extend(rng.bytes(len));
            } else {
                bytes.extend(bad_head(rng, token));
            }
            bytes
        }
        // Random bytes, sometimes behind a plausible start.
        8 => {
            let len = 1 + rng.below(2048);
            let mut bytes = if rng.chance(50) {
                b"GET /".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend(rng.bytes(len));
            bytes
        }
        // An early close: a prefix of a request, then EOF.
        _ => {
            let mut bytes = rng.pick(&valid).clone();
            let keep = rng.below(bytes.len());
            bytes.truncate(keep);
            bytes
        }
    };
    // A few connections stay open, so the header and keep-alive timeouts must end them;
    // the rest close their write side after sending. A complete HTTP/2 preface left open
    // is an idle HTTP/2 connection, which keep_alive_timeout ends.
    let open = rng.chance(3);
    Case {
        chunks: split(rng, bytes),
        close_write: !open,
    }
}

#[derive(Debug)]
enum Outcome {
    /// Status codes of the responses read before the server closed the connection
    /// (empty: closed without an answer).
    Answered(Vec<u16>),
    /// Still open, nothing more read, past the deadline.
    Hung(Vec<u16>),
}

/// The status of every response in `bytes` (pipelined responses follow one another).
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let marker = b"HTTP/1.1 ";
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let start = at + offset + marker.len();
        if let Some(code) = bytes
            .get(start..start + 3)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse().ok())
        {
            found.push(code);
        }
        at = start;
    }
    found
}

async fn run_case(address: String, case: Case) -> Outcome {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return Outcome::Answered(Vec::new());
    };
    let many = case.chunks.len() > 1;
    for chunk in &case.chunks {
        // A write refused because the server already answered and closed is a close.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        if many {
            // Lets each chunk leave as its own segment: the stimulus of a split head.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    if case.close_write {
        let _ = stream.shutdown().await;
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = CASE_DEADLINE.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return Outcome::Hung(statuses(&received)),
            // EOF or a reset: the server closed the connection.
            Ok(Ok(0)) | Ok(Err(_)) => return Outcome::Answered(statuses(&received)),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Resident set size of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_requests_get_a_4xx_or_a_close() {
    let scratch = Scratch::new();
    let config = format!(
        "[server]\nheader_read_timeout = \"{}ms\"\nkeep_alive_timeout = \"{}ms\"\n\
         request_timeout = \"{}ms\"\nmax_body_bytes = 4096\n",
        HEADER_TIMEOUT.as_millis(),
        HEADER_TIMEOUT.as_millis(),
        REQUEST_TIMEOUT.as_millis()
    );
    let mut process = ServerProcess::start(&scratch, "proxy.toml", &config).await;
    let school = scratch.db("robust");
    let output = scratch.run(
        &process.config,
        &["tenants", "add", "--name", "Robust", "--database", &school],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = token_for(&school);
    let client = http_client();
    wait_for("the school", Duration::from_secs(10), || async {
        (lunch_weeks_status(&client, &process.base, &token).await == 200).then_some(())
    })
    .await;
    let address = process.base.trim_start_matches("http://").to_string();
    let pid = process.process.child.id().expect("running");

    // Idle level: after the school's pool and every path of the corpus were used once.
    let mut rng = Rng(SEED);
    for request in valid_requests(&token) {
        let case = Case {
            chunks: vec![request],
            close_write: true,
        };
        run_case(address.clone(), case).await;
    }
    let idle = rss_kib(pid);

    let started = Instant::now();
    let mut cases = JoinSet::new();
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for number in 0..CASES {
        let case = generate(&mut rng, &token);
        let description = format!(
            "case {number}: {:?}",
            String::from_utf8_lossy(&case.chunks.concat())
        );
        if cases.len() == CONCURRENCY {
            record(
                cases.join_next().await.unwrap().unwrap(),
                &mut tally,
                &mut failures,
            );
        }
        let address = address.clone();
        cases.spawn(async move { (description, run_case(address, case).await) });
    }
    while let Some(done) = cases.join_next().await {
        record(done.unwrap(), &mut tally, &mut failures);
    }
    let elapsed = started.elapsed();
    let peak = rss_kib(pid);
    println!(
        "{CASES} cases in {elapsed:?}; outcomes: {tally:?}; RSS idle {idle} KiB, after {peak} KiB"
    );
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases failed (first 5):\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The corpus reached the server's refusals, not only its closes.
    for status in ["400", "404", "405", "413", "431"] {
        assert!(
            tally.keys().any(|k| k.contains(status)),
            "no {status} in {tally:?}"
        );
    }

    // Alive and serving, then back near idle once the connections are gone.
    assert!(
        process.process.child.try_wait().unwrap().is_none(),
        "the process exited"
    );
    assert_eq!(
        lunch_weeks_status(&client, &process.base, &token).await,
        200
    );
    let settled = wait_for("RSS back near idle", Duration::from_secs(20), || async {
        let rss = rss_kib(pid);
        (rss <= idle + RSS_MARGIN_KIB).then_some(rss)
    })
    .await;
    println!("RSS settled at {settled} KiB (idle {idle} KiB, margin {RSS_MARGIN_KIB} KiB)");
}

/// Counts an outcome, and keeps the case if it was a 5xx or a hang.
fn record(
    (description, outcome): (String, Outcome),
    tally: &mut std::collections::BTreeMap<String, usize>,
    failures: &mut Vec<String>,
) {
    let (statuses, hung) = match &outcome {
        Outcome::Answered(s) => (s, false),
        Outcome::Hung(s) => (s, true),
    };
    let key = if statuses.is_empty() {
        "closed".to_string()
    } else {
        statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("+")
    };
    *tally.entry(key).or_default() += 1;
    if hung || statuses.iter().any(|&s| s >= 500) {
        let mut shown = description;
        shown.truncate(600);
        failures.push(format!("{outcome:?} for {shown}"));
    }
}
