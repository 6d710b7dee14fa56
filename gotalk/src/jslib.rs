//! The browser library `gotalk.js`, embedded in the crate, and how it is served.
//!
//! A [`ws::Endpoint`](crate::ws::Endpoint) serves it at `{mount}gotalk.js` so that a page needs
//! nothing but
//!
//! ```html
//! <script src="/gotalk/gotalk.js"></script>
//! <script>
//!   const s = gotalk.connection();   // connects to ws://<host>/gotalk/
//! </script>
//! ```
//!
//! The library finds its endpoint from the URL it was loaded from (`document.currentScript`).
//! Where that is not known (loaded as a module, or through `eval`), a one-line prefix added by
//! the server tells it the mount path instead (`window.gotalkResponderAt`). The prefix stays on
//! the first line, so line numbers in stack traces match the source.
//!
//! Each response carries a strong `ETag` (SHA-1 of the bytes served), answers a matching
//! `If-None-Match` with `304 Not Modified`, and is gzip-compressed when the client accepts it
//! (compressed once, when the endpoint is built). `Cache-Control: no-cache` makes browsers
//! revalidate on every load, which costs one 304 and picks up a new version at once.

use std::fmt;
use std::io::Write;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// The source of `gotalk.js` as shipped with this crate (without the server's prefix).
pub const GOTALK_JS: &str = include_str!("../js/gotalk.js");

/// `Content-Type` of the served library.
pub const CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// `Cache-Control` of the served library: cache, but revalidate (cheaply, with the ETag) on
/// every use.
pub const CACHE_CONTROL: &str = "no-cache";

/// `gotalk.js` prepared for serving from one mount path: the bytes, their gzip form and ETag.
#[derive(Clone)]
pub struct JsLib {
    body: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
}

impl fmt::Debug for JsLib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsLib")
            .field("len", &self.body.len())
            .field("gzip_len", &self.gzip.len())
            .field("etag", &self.etag)
            .finish()
    }
}

impl JsLib {
    /// Prepares the library for an endpoint mounted at `mount` (a path such as `/gotalk/`).
    pub fn new(mount: &str) -> JsLib {
        let mount_json = serde_json::to_string(mount).expect("a string encodes");
        let prefix = format!(
            "(function(g){{try{{var d=g.document,c=d&&d.currentScript;\
             if(!(c&&c.src)&&!g.gotalkResponderAt)g.gotalkResponderAt={{ws:{mount_json}}}}}\
             catch(e){{}}}})(typeof globalThis!=='undefined'?globalThis:this);"
        );
        let mut body = Vec::with_capacity(prefix.len() + GOTALK_JS.len());
        body.extend_from_slice(prefix.as_bytes());
        body.extend_from_slice(GOTALK_JS.as_bytes());
        let digest = Sha1::digest(&body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&body).expect("writing to memory");
        let gzip = gz.finish().expect("writing to memory");
        JsLib {
            body: Bytes::from(body),
            gzip: Bytes::from(gzip),
            etag,
        }
    }

    /// The bytes served (prefix and library), uncompressed.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The bytes served to clients that accept gzip.
    pub fn gzip_body(&self) -> &Bytes {
        &self.gzip
    }

    /// The strong entity tag, quotes included.
    pub fn etag(&self) -> &str {
        self.etag.to_str().expect("ascii")
    }

    /// The response to a `GET` or `HEAD` with these request headers.
    pub fn respond(&self, method: &Method, headers: &HeaderMap) -> Response {
        let mut res = Response::builder()
            .header(header::ETAG, self.etag.clone())
            .header(header::CACHE_CONTROL, CACHE_CONTROL)
            .header(header::VARY, "Accept-Encoding");
        if method != Method::GET && method != Method::HEAD {
            return res
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "GET, HEAD")
                .body(Body::empty())
                .expect("valid response");
        }
        if if_none_match(headers, self.etag()) {
            return res
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .expect("valid response");
        }
        let body = if accepts_gzip(headers) {
            res = res.header(header::CONTENT_ENCODING, "gzip");
            self.gzip.clone()
        } else {
            self.body.clone()
        };
        res.status(StatusCode::OK)
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CONTENT_LENGTH, body.len())
            .body(if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(body)
            })
            .expect("valid response")
    }
}

/// Whether `If-None-Match` lists `etag` (weak comparison, as RFC 9110 says for this header)
/// or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Whether `Accept-Encoding` allows gzip (listed, or `*`, without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut star = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(!q_zero),
            "*" => star = Some(!q_zero),
            _ => {}
        }
    }
    gzip.or(star).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[(
            "accept-encoding",
            "*, gzip;q=0"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn etag_matching() {
        let lib = JsLib::new("/gotalk/");
        let tag = lib.etag().to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 42);
        let h = |v: String| {
            let mut m = HeaderMap::new();
            m.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&v).unwrap());
            m
        };
        assert!(if_none_match(&h(tag.clone()), &tag));
        assert!(if_none_match(&h(format!("W/{tag}")), &tag));
        assert!(if_none_match(&h(format!("\"x\", {tag}")), &tag));
        assert!(if_none_match(&h("*".into()), &tag));
        assert!(!if_none_match(&h("\"other\"".into()), &tag));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }

    #[test]
    fn mount_is_part_of_the_content_and_the_etag() {
        let a = JsLib::new("/gotalk/");
        let b = JsLib::new("/other/");
        assert_ne!(a.etag(), b.etag());
        assert!(a.body().ends_with(GOTALK_JS.as_bytes()));
        assert!(std::str::from_utf8(a.body())
            .unwrap()
            .contains("{ws:\"/gotalk/\"}"));
        // The prefix adds no line.
        assert_eq!(
            a.body().iter().filter(|&&c| c == b'\n').count(),
            GOTALK_JS.matches('\n').count()
        );
        let mut gz = flate2::read::GzDecoder::new(&a.gzip_body()[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut out).unwrap();
        assert_eq!(&out[..], &a.body()[..]);
        assert!(a.gzip_body().len() < a.body().len() / 2);
    }
}
