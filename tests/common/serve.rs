//! `loopspy serve` as the tests run it: on a free port, its messages kept, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `loopspy serve` running; killed on drop.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    /// When it was started ([`super::monotonic`]).
    pub started: f64,
    /// What it said on stderr after saying where it listens (drained as it comes, so that it
    /// never blocks on a full pipe).
    pub said: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// `loopspy serve ARGS --listen 127.0.0.1:0`, once it says where it listens.
    pub fn start(args: &[&str]) -> Serve {
        let started = super::monotonic();
        let mut child = Command::new(super::loopspy_bin())
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut port = None;
        let mut before = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("serving http://127.0.0.1:").nth(1) {
                port = rest.split('/').next().and_then(|p| p.parse().ok());
                break;
            }
            before.push(line);
        }
        let said = Arc::new(Mutex::new(Vec::new()));
        {
            let said = said.clone();
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| said.lock().unwrap().push(l)));
        }
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve never said where it listens:\n{}", before.join("\n"));
        };
        Serve { child, port, started, said }
    }

    /// GET /metrics: the body of a 200 answer in the text exposition format.
    pub fn scrape(&self) -> String {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        body.to_string()
    }

    /// One scrape, as `(name, labels, value)` per sample line.
    pub fn samples(&self) -> Vec<(String, String, f64)> {
        self.scrape()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {l}"));
                let (name, labels) = series.split_once('{').map(|(n, r)| (n, r.trim_end_matches('}'))).unwrap_or((series, ""));
                (name.to_string(), labels.to_string(), value.parse().unwrap_or_else(|_| panic!("not a value: {l}")))
            })
            .collect()
    }

    /// What it said since it started listening, one line each.
    pub fn said(&self) -> String {
        self.said.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
