//! The web client (issue 14), served by the supernode itself on its client listener, next to the
//! WebSocket endpoint (`/v1/ws`): `https://HOST:7443/` opens the app, which then speaks the
//! protocol to `wss://HOST:7443/v1/ws` — the same origin, so no CORS and no other web server.
//!
//! The files are those of `web/dist` at build time, compiled into the binary by `build.rs`;
//! nothing is loaded from any other origin. A binary built without `web/dist` (no node on the
//! build machine) serves a page that says how to build the web client.
//!
//! Every answer carries strict headers: a Content-Security-Policy that allows scripts, styles
//! and connections from this origin only (no inline script, no `eval`, no framing), no referrer,
//! no MIME sniffing. Vite names the files under `/assets/` by a hash of their content, so they
//! are cached for a year; `index.html`, which names them, is revalidated on every load.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// `Cache-Control` of the content-hashed files under `/assets/`: a new build has new names.
pub const CACHE_HASHED: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else (`index.html` first): ask every time.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// The page a supernode built without the web client serves at `/`. Plain HTML without script
/// or style, so the strict policy holds for it too.
pub const NOT_BUILT_PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Peerline: web client not built</title></head>
<body>
<h1>The Peerline web client is not built into this supernode</h1>
<p>This supernode works (clients connect to its WebSocket endpoint, <code>/v1/ws</code>), but it was
built without the web client. To build it in, on a machine with node 20 and npm:</p>
<pre>cd web &amp;&amp; npm ci &amp;&amp; npm run build &amp;&amp; cd ..
cargo build --release -p peerline-supernode</pre>
<p>then restart the supernode. See docs/web.md.</p>
</body>
</html>
";

/// Whether this binary carries the built web client (`web/dist` existed when it was built).
pub fn built() -> bool {
    !ASSETS.is_empty()
}

/// The web client's routes: a fallback after every other route of the client listener, so that
/// the WebSocket endpoint is untouched.
#[derive(Debug, Clone, Copy)]
pub struct WebApp {
    assets: &'static [(&'static str, &'static [u8])],
    tls: bool,
}

impl WebApp {
    /// The app compiled into this binary; `tls` says whether the listener speaks TLS (the
    /// WebSocket scheme the policy allows: `wss:` or, on a plaintext loopback listener, `ws:`).
    pub fn compiled(tls: bool) -> Self {
        Self { assets: ASSETS, tls }
    }

    /// An app made of `assets` (URL path, bytes), sorted by path: for tests.
    pub fn with_assets(assets: &'static [(&'static str, &'static [u8])], tls: bool) -> Self {
        Self { assets, tls }
    }

    /// Adds the app to `router` as its fallback: every path no other route takes.
    pub fn mount<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.fallback(move |method: Method, uri: Uri, headers: HeaderMap| async move {
            self.respond(&method, uri.path(), &headers)
        })
    }

    /// The answer to `method path` with the request's `headers`.
    pub fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        let mut response = self.content(method, path);
        let policy = content_security_policy(self.tls, headers.get(header::HOST));
        let h = response.headers_mut();
        if let Ok(policy) = HeaderValue::from_str(&policy) {
            h.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
        for (name, value) in [
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // For browsers older than `frame-ancestors`.
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
            (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
            // The microphone is for calls; nothing else is ever asked for.
            (
                header::HeaderName::from_static("permissions-policy"),
                "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
            ),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        response
    }

    fn content(&self, method: &Method, path: &str) -> Response {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = if path == "/" { "/index.html" } else { path };
        if let Ok(i) = self.assets.binary_search_by(|(p, _)| (*p).cmp(path))
            && let Some((_, bytes)) = self.assets.get(i)
        {
            let cache = if path.starts_with("/assets/") { CACHE_HASHED } else { CACHE_REVALIDATE };
            return file(content_type(path), cache, bytes);
        }
        if self.assets.is_empty() && path == "/index.html" {
            return file("text/html; charset=utf-8", CACHE_REVALIDATE, NOT_BUILT_PAGE.as_bytes());
        }
        plain(StatusCode::NOT_FOUND, "not found\n")
    }
}

fn file(content_type: &'static str, cache: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = file("text/plain; charset=utf-8", CACHE_REVALIDATE, text.as_bytes());
    *response.status_mut() = status;
    response
}

/// The policy: this origin only, for everything the app loads. `connect-src` names the
/// WebSocket origin as well as `'self'` (browsers before CSP level 3 do not count `wss:` as
/// `'self'`); the host is the one the browser asked for, when it is a plain host[:port].
pub fn content_security_policy(tls: bool, host: Option<&HeaderValue>) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    let socket = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!(" {scheme}://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         font-src 'self'; manifest-src 'self'; connect-src 'self'{socket}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// The `Content-Type` of a file of the app, by its extension.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    static APP: &[(&str, &[u8])] = &[
        ("/assets/index-3f2a.js", b"console.log(1)"),
        ("/favicon.svg", b"<svg/>"),
        ("/index.html", b"<!doctype html><script src=/assets/index-3f2a.js></script>"),
    ];

    fn get(app: WebApp, path: &str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("sn.example.org:7443"));
        app.respond(&Method::GET, path, &headers)
    }

    fn header(r: &Response, name: header::HeaderName) -> &str {
        r.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn index_is_revalidated_hashed_assets_are_cached_for_a_year() {
        let app = WebApp::with_assets(APP, true);
        let index = get(app, "/");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(header(&index, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&index, header::CACHE_CONTROL), "no-cache");
        let js = get(app, "/assets/index-3f2a.js");
        assert_eq!(header(&js, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert_eq!(header(&js, header::CACHE_CONTROL), CACHE_HASHED);
        assert_eq!(header(&get(app, "/favicon.svg"), header::CACHE_CONTROL), "no-cache");
        assert_eq!(get(app, "/nope").status(), StatusCode::NOT_FOUND);
        assert_eq!(get(app, "/assets/").status(), StatusCode::NOT_FOUND);
        let post = app.respond(&Method::POST, "/", &HeaderMap::new());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn every_answer_has_the_strict_headers() {
        let app = WebApp::with_assets(APP, true);
        for path in ["/", "/assets/index-3f2a.js", "/nope"] {
            let r = get(app, path);
            let csp = header(&r, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
            assert!(csp.contains("connect-src 'self' wss://sn.example.org:7443;"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(header(&r, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }
    }

    #[test]
    fn a_strange_host_header_is_left_out_of_the_policy() {
        for host in ["evil.example; script-src *", "a b", ""] {
            let value = HeaderValue::from_str(host).unwrap();
            let csp = content_security_policy(true, Some(&value));
            assert!(csp.contains("connect-src 'self';"), "{host:?}: {csp}");
        }
        let plain = HeaderValue::from_static("127.0.0.1:8080");
        assert!(
            content_security_policy(false, Some(&plain)).contains("'self' ws://127.0.0.1:8080")
        );
    }

    #[test]
    fn without_a_built_app_the_root_says_how_to_build_it() {
        let app = WebApp::with_assets(&[], true);
        let r = get(app, "/");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        assert!(header(&r, header::CONTENT_SECURITY_POLICY).contains("default-src 'none'"));
        assert!(NOT_BUILT_PAGE.contains("npm ci") && NOT_BUILT_PAGE.contains("npm run build"));
        assert!(!NOT_BUILT_PAGE.contains("<script") && !NOT_BUILT_PAGE.contains("style"));
        assert_eq!(get(app, "/assets/x.js").status(), StatusCode::NOT_FOUND);
    }
}
