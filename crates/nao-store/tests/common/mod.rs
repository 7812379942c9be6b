//! Test helpers shared by the store's and the binary's integration tests (the binary's
//! include this file by path): a small HTTP/1.1 server on loopback that supports Range
//! requests and can be slow, cut connections or fail on purpose; deterministic data;
//! digests from the system's `sha256sum` (independent of our own hashing); wheels built
//! by Python's `zipfile` (independent of our zip reader).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers one path.
#[derive(Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    pub content_type: String,
    /// Honour `Range: bytes=N-` with 206.
    pub range: bool,
    /// Send the body in chunks of this size (0 = all at once) ...
    pub chunk: usize,
    /// ... sleeping this long after each.
    pub delay: Duration,
    /// Answer this many requests with 500 first.
    pub fail_first: usize,
    /// On the first successful request, close the connection after this many body bytes.
    pub cut_after: Option<usize>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Answer with a 302 to this location instead.
    pub redirect: Option<String>,
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    served: HashMap<String, usize>,
    log: Vec<Seen>,
}

#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = Arc::clone(&st);
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        Server { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn route(&self, path: &str, r: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), r);
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.log().into_iter().filter(|s| s.path == path).collect()
    }
}

fn handle(conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let (route, nth) = {
        let mut s = st.lock().unwrap();
        let route = s.routes.get(&path).cloned();
        let n = s.served.entry(path.clone()).or_default();
        let nth = *n;
        *n += 1;
        (route, nth)
    };
    let mut out = conn;
    let log = |status| {
        st.lock().unwrap().log.push(Seen {
            path: path.clone(),
            range: range.clone(),
            status,
        })
    };
    let Some(r) = route else {
        log(404);
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    if let Some(loc) = &r.redirect {
        log(302);
        let mut head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {loc}\r\nContent-Length: 0\r\nConnection: close\r\n"
        );
        for (k, v) in &r.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        return out.write_all(head.as_bytes());
    }
    if nth < r.fail_first {
        log(500);
        return out.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let len = r.body.len();
    let start = match (&range, r.range) {
        (Some(v), true) => v
            .strip_prefix("bytes=")
            .and_then(|v| v.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
        _ => None,
    };
    let (status, from) = match start {
        Some(s) if s >= len => {
            log(416);
            return out.write_all(format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
        Some(s) => (206, s),
        None => (200, 0),
    };
    log(status);
    let mut head = if status == 206 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\n",
            len - 1
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n",
        len - from
    ));
    if !r.content_type.is_empty() {
        head.push_str(&format!("Content-Type: {}\r\n", r.content_type));
    }
    if r.range {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let first_ok = nth == r.fail_first;
    let end = match r.cut_after {
        Some(c) if first_ok => (from + c).min(len),
        _ => len,
    };
    let chunk = if r.chunk == 0 { len.max(1) } else { r.chunk };
    let mut at = from;
    while at < end {
        let n = chunk.min(end - at);
        out.write_all(&r.body[at..at + n])?;
        out.flush()?;
        at += n;
        if !r.delay.is_zero() {
            std::thread::sleep(r.delay);
        }
    }
    // Dropping the stream closes it; a cut leaves the client short of Content-Length.
    let _ = out.shutdown(std::net::Shutdown::Both);
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
    Ok(())
}

/// `n` deterministic pseudo-random bytes (xorshift64*).
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A fresh empty directory for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nao-store-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// The sha256 of a file as the system's `sha256sum` computes it (64 hex digits).
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// `sha256sum` of bytes (written to a scratch file first).
pub fn sha256_of(bytes: &[u8], scratch: &Path) -> String {
    let p = scratch.join("sha256-input");
    std::fs::write(&p, bytes).expect("write scratch");
    let d = sha256sum(&p);
    let _ = std::fs::remove_file(&p);
    d
}

/// Builds a wheel with Python's `zipfile`: each `(member, bytes, deflate)` is written in
/// order, plus a `<stem>/__init__.py` that must not end up in the model.
pub fn build_wheel(path: &Path, stem: &str, members: &[(&str, &[u8], bool)]) {
    let dir = path.parent().expect("wheel dir");
    let mut script = String::from("import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\n");
    script.push_str(&format!("z.writestr('{stem}/__init__.py', '')\n"));
    for (i, (name, bytes, deflate)) in members.iter().enumerate() {
        let src = dir.join(format!("member-{i}"));
        std::fs::write(&src, bytes).expect("write member");
        let method = if *deflate {
            "zipfile.ZIP_DEFLATED"
        } else {
            "zipfile.ZIP_STORED"
        };
        script.push_str(&format!(
            "z.write({:?}, '{name}', compress_type={method})\n",
            src.display().to_string()
        ));
    }
    script.push_str("z.close()\n");
    let st = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(path)
        .status()
        .expect("python3 runs");
    assert!(st.success(), "building the wheel failed");
}

/// Serves `wheels` (file name, bytes) as packages on a PEP 691 JSON index at `/simple`,
/// each package page listing its wheel's sha256 (from `sha256sum`).
pub fn serve_index(server: &Server, packages: &[(&str, &str, Vec<u8>)], scratch: &Path) {
    for (pkg, fname, bytes) in packages {
        let sha = sha256_of(bytes, scratch);
        let url = server.url(&format!("/files/{fname}"));
        let page = format!(
            r#"{{"meta":{{"api-version":"1.1"}},"name":"{pkg}","files":[{{"filename":"{fname}","url":"{url}","hashes":{{"sha256":"{sha}"}}}}]}}"#
        );
        server.route(
            &format!("/simple/{pkg}/"),
            Route {
                body: page.into_bytes(),
                content_type: "application/vnd.pypi.simple.v1+json".into(),
                ..Route::default()
            },
        );
        server.route(
            &format!("/files/{fname}"),
            Route {
                body: bytes.clone(),
                range: true,
                ..Route::default()
            },
        );
    }
}
