//! A small HTTP/1.1 server on 127.0.0.1 whose routes misbehave on purpose: no Range support,
//! 404, 500 a few times, a connection cut mid-body, a stall, an HTML page.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Behaviour {
    Normal,
    /// Answers 200 with the whole body even when a Range is asked.
    IgnoresRange,
    NotFound,
    /// 500 for the first `n` requests, then normal.
    FailsFirst(u32),
    /// The first response announces the full length but closes after `n` bytes.
    CutsFirstAfter(usize),
    /// Sends the headers and a few bytes, then says nothing for a long time.
    Stalls,
    /// Answers with an HTML page (like a download-confirmation interstitial).
    Html,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

struct Route {
    body: Vec<u8>,
    behaviour: Behaviour,
    delay: Duration,
    hits: u32,
}

pub struct Server {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let (r, l) = (routes.clone(), log.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, l) = (r.clone(), l.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &r, &l);
                });
            }
        });
        Server { base, routes, log }
    }

    pub fn route(&self, path: &str, body: &[u8], behaviour: Behaviour) -> String {
        self.route_with_delay(path, body, behaviour, Duration::ZERO)
    }

    /// A route that waits `delay` before answering (to make two clients overlap).
    pub fn route_with_delay(&self, path: &str, body: &[u8], behaviour: Behaviour, delay: Duration) -> String {
        self.routes.lock().unwrap().insert(path.to_owned(), Route { body: body.to_vec(), behaviour, delay, hits: 0 });
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

fn serve(mut stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_owned());
            }
        }
    }
    log.lock().unwrap().push(Request { path: path.clone(), range: range.clone() });
    let (body, behaviour, delay, hit) = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(r) => {
                r.hits += 1;
                (r.body.clone(), r.behaviour.clone(), r.delay, r.hits)
            }
            None => (Vec::new(), Behaviour::NotFound, Duration::ZERO, 1),
        }
    };
    thread::sleep(delay);
    let status = |s: &mut TcpStream, code: &str| write!(s, "HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    match behaviour {
        Behaviour::NotFound => return status(&mut stream, "404 Not Found"),
        Behaviour::FailsFirst(n) if hit <= n => return status(&mut stream, "500 Internal Server Error"),
        Behaviour::Html => {
            let page = b"<html><body>Google Drive can't scan this file for viruses.</body></html>";
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", page.len())?;
            return stream.write_all(page);
        }
        Behaviour::Stalls => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            stream.write_all(&body[..body.len().min(10)])?;
            stream.flush()?;
            thread::sleep(Duration::from_secs(5));
            return Ok(());
        }
        _ => {}
    }
    let start = match (&behaviour, &range) {
        (Behaviour::IgnoresRange, _) | (_, None) => None,
        (_, Some(r)) => r.strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse::<usize>().ok()),
    };
    match start {
        Some(s) if s >= body.len() => {
            write!(stream, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len())?;
        }
        Some(s) => {
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - s
            )?;
            stream.write_all(&body[s..])?;
        }
        None => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", body.len())?;
            match behaviour {
                Behaviour::CutsFirstAfter(n) if hit == 1 => {
                    stream.write_all(&body[..n.min(body.len())])?;
                    stream.flush()?;
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                _ => stream.write_all(&body)?,
            }
        }
    }
    stream.flush()
}

/// Archives and checksums for the tests.
pub mod data {
    use sha2::{Digest, Sha256};
    use std::io::Write;

    pub fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A tar.gz with `images` JPEG-named files under `domain/images/` and a readme.
    pub fn image_tar_gz(domain: &str, images: usize) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for i in 0..images {
            let data = format!("fake image {i}").into_bytes();
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("{domain}/images/class{}/img{i}.jpg", i % 3), &data[..]).unwrap();
        }
        let readme = b"readme";
        let mut h = tar::Header::new_gnu();
        h.set_size(readme.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "README.txt", &readme[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    /// A zip whose second entry climbs out of the extraction folder.
    pub fn zip_slip() -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("good/a.jpg", opts).unwrap();
        zip.write_all(b"ok").unwrap();
        zip.start_file("../../evil.txt", opts).unwrap();
        zip.write_all(b"pwned").unwrap();
        zip.finish().unwrap().into_inner()
    }

    /// Deterministic pseudo-random bytes (incompressible enough to be cut mid-way).
    pub fn blob(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }
}
