//! The web client as the supernode serves it (issue 14, item 1): on the client address, next to
//! the WebSocket endpoint, with strict headers; a page saying how to build it when the binary was
//! built without `web/dist`; nothing but the WebSocket endpoint with `--no-web`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Stdio;

use common::{Raw, TestNode, WAIT, tls, within};
use peerline_supernode::web;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An HTTP/1.1 answer: status, headers (names in lower case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over `stream` (one request, `Connection: close`).
async fn get_over(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    host: &str,
    path: &str,
) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may end without close_notify after `Connection: close`; what came is enough.
    let _ = within("the HTTP answer", stream.read_to_end(&mut raw)).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of the headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: raw[split + 4..].to_vec() }
}

/// `GET path` from a TLS supernode.
async fn get(node: &TestNode, path: &str) -> Answer {
    let tcp = TcpStream::connect(node.client_addr).await.unwrap();
    get_over(tls(tcp).await, &node.client_addr.to_string(), path).await
}

/// The headers every answer of the web client carries.
fn assert_strict_headers(a: &Answer, websocket_origin: &str) {
    let csp = a.header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "only this origin's scripts: {csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(csp.contains(&format!("connect-src 'self' {websocket_origin};")), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.header("referrer-policy"), "no-referrer");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn the_app_is_served_with_strict_headers_where_clients_connect() {
    let node = TestNode::start(&["alice"]).await;
    let origin = format!("wss://{}", node.client_addr);

    let index = get(&node, "/").await;
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(index.header("cache-control"), "no-cache", "index.html is revalidated");
    assert_strict_headers(&index, &origin);

    if web::built() {
        // Vite's index.html loads its hashed bundle from /assets/, from this origin only.
        let html = index.text();
        let start = html.find("src=\"/assets/").expect("index.html loads /assets/…js") + 5;
        let src = &html[start..start + html[start..].find('"').unwrap()];
        assert!(!html.contains("http://") && !html.contains("https://"), "no other origin");
        let script = get(&node, src).await;
        assert_eq!(script.status, 200, "{src}");
        assert_eq!(script.header("content-type"), "text/javascript; charset=utf-8");
        assert_eq!(script.header("cache-control"), web::CACHE_HASHED, "hashed: a year");
        assert_strict_headers(&script, &origin);
    } else {
        assert_eq!(index.text(), web::NOT_BUILT_PAGE, "the page that says how to build it");
        assert!(index.text().contains("npm ci") && index.text().contains("npm run build"));
    }

    let missing = get(&node, "/no/such/file.js").await;
    assert_eq!(missing.status, 404);
    assert_strict_headers(&missing, &origin);

    // The WebSocket endpoint on the same port works exactly as before.
    let mut raw = Raw::connect(&node).await;
    raw.login("alice").await;
    let plain_get = get(&node, peerline_wire::WS_PATH).await;
    assert_ne!(plain_get.status, 200, "/v1/ws without an upgrade is not a page");
    assert_eq!(plain_get.header("content-security-policy"), "", "not answered by the web app");
    node.stop().await;
}

#[tokio::test]
async fn with_web_off_only_the_websocket_endpoint_answers() {
    let node = TestNode::start_with(&["alice"], |c| c.web = false).await;
    for path in ["/", "/index.html", "/assets/index.js"] {
        let a = get(&node, path).await;
        assert_eq!(a.status, 404, "{path}");
        assert!(!a.text().contains("Peerline"), "{path}: {}", a.text());
    }
    let mut raw = Raw::connect(&node).await;
    raw.login("alice").await;
    node.stop().await;
}

/// Runs the real binary on loopback (plain WebSocket) with `extra` flags; returns it with its
/// stdout lines up to `admin on …` and the client address.
async fn spawn_binary(
    dir: &std::path::Path,
    extra: &[&str],
) -> (tokio::process::Child, Vec<String>) {
    let data = dir.display().to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_peerline-supernode"))
        .args(["--data-dir", &data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--stun-listen", "127.0.0.1:0", "--insecure-plaintext"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let read = async {
        while let Some(line) = out.next_line().await.unwrap() {
            let done = line.starts_with("admin on ");
            lines.push(line);
            if done {
                break;
            }
        }
    };
    if tokio::time::timeout(WAIT, read).await.is_err() {
        panic!("the supernode did not start within {WAIT:?}: {lines:?}");
    }
    (child, lines)
}

#[tokio::test]
async fn the_binary_prints_the_app_url_and_no_web_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_binary(&dir.path().join("a"), &[]).await;
    let listening = lines.iter().find_map(|l| l.strip_prefix("listening on ws://")).unwrap();
    let app_line = format!("web client on http://{listening}/");
    assert!(lines.contains(&app_line), "{lines:?}");
    let index = get_over(TcpStream::connect(listening).await.unwrap(), listening, "/").await;
    assert_eq!(index.status, 200);
    assert_strict_headers(&index, &format!("ws://{listening}"));
    child.kill().await.unwrap();

    let (mut child, lines) = spawn_binary(&dir.path().join("b"), &["--no-web"]).await;
    assert!(!lines.iter().any(|l| l.starts_with("web client on")), "{lines:?}");
    let listening = lines.iter().find_map(|l| l.strip_prefix("listening on ws://")).unwrap();
    let index = get_over(TcpStream::connect(listening).await.unwrap(), listening, "/").await;
    assert_eq!(index.status, 404, "--no-web: {}", index.text());
    child.kill().await.unwrap();
}

/// The safety number of `alice` with device key `[1; 32]` and `bob` with `[2; 32]`, as
/// `peerline verify` computes it. `web/tests/unit.mjs` checks that the web client's
/// `web/src/safety.ts` computes the same digits; this test checks that it is the CLI's number
/// and that the web test still pins this very vector.
const SAFETY_VECTOR: &str =
    "44362 76420 49311 05085 38328 30201 58569 86618 32557 93956 67720 80510";

#[test]
fn the_web_clients_safety_number_vector_is_the_clis() {
    let cli = peerline_client::peer_keys::safety_number("alice", &[1; 32], "bob", &[2; 32]);
    assert_eq!(cli, SAFETY_VECTOR, "the CLI's safety number changed");
    let web_test = include_str!("../../../web/tests/unit.mjs");
    assert!(
        web_test.contains(&format!("const SAFETY_VECTOR = \"{SAFETY_VECTOR}\";")),
        "web/tests/unit.mjs must pin the same vector"
    );
}
