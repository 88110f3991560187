//! A real nginx for the HTTP(S) source tests, on 127.0.0.1 only: its own
//! config, pid, logs and temp paths in a scratch directory, `daemon off`
//! and one process (`master_process off`) as a child of the test, killed
//! when dropped. The HTTPS server's certificate for `127.0.0.1` is signed
//! by a self-signed CA made with `openssl`, given to the host with `--cacert`.
//! A missing nginx or openssl fails the test, never skips it.
//!
//! Locations: `/` serves `www/`; `/norange/` serves the same files but
//! ignores Range (`max_ranges 0`); `/private/` answers 403 without
//! `Authorization: Bearer t0ken-SECRET`; `/moved/X` redirects to `/X`.
//! The access log has one line per request: method, URI, status, body
//! bytes sent, Range.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// The bearer token `/private/` wants.
pub const TOKEN: &str = "t0ken-SECRET";

/// A running nginx; see the module documentation.
pub struct Nginx {
    dir: PathBuf,
    child: Option<Child>,
    /// The HTTP port and the HTTPS port, both on 127.0.0.1.
    pub http: u16,
    pub https: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn nginx_bin() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/nginx");
    assert!(
        p.exists(),
        "nginx is not installed (apt-get install nginx): the HTTP source tests need it"
    );
    p
}

/// Run `openssl ARGS` in `dir`; panic with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is not installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA (`ca.pem`, for `--cacert`) and the server's
/// certificate for 127.0.0.1 signed by it (`cert.pem`, `key.pem`): rustls
/// refuses a CA certificate used as the server's own.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &["-days", "2", "-subj", "/CN=feedfs test CA"],
    ];
    openssl(
        dir,
        &[ca.concat(), vec!["-keyout", "ca.key", "-out", "ca.pem"]].concat(),
    );
    let req = [
        &["req"][..],
        &ec,
        &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem"],
    ];
    openssl(dir, &[req.concat(), vec!["-out", "server.csr"]].concat());
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    );
}

impl Nginx {
    /// Start nginx with its files in `dir`; files to serve go in [`Nginx::www`].
    pub fn start(dir: &Path) -> Nginx {
        fs::create_dir_all(dir.join("www")).unwrap();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        make_certificates(dir);
        let mut n = Nginx {
            dir: dir.to_path_buf(),
            child: None,
            http: free_port(),
            https: free_port(),
        };
        n.write_config();
        n.resume();
        n
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format feedfs '$request_method $uri $status $body_bytes_sent $http_range';
    access_log {d}/access.log feedfs;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        root {d}/www;
        location /norange/ {{ alias {d}/www/; max_ranges 0; }}
        location /private/ {{
            alias {d}/www/;
            if ($http_authorization != "Bearer {TOKEN}") {{ return 403; }}
        }}
        location /moved/ {{ rewrite ^/moved/(.*)$ /$1 redirect; }}
    }}
}}
"#,
            http = self.http,
            https = self.https,
        );
        fs::write(self.dir.join("nginx.conf"), conf).unwrap();
    }

    /// Where the served files go.
    pub fn www(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// The CA's PEM file, to pass to `--cacert`.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.http)
    }

    /// `https://127.0.0.1:PORT/PATH`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.https)
    }

    /// Kill nginx (connections drop at once) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start nginx again on the same ports; wait until it accepts.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nginx is already running");
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let (http, https) = (self.http, self.https);
        wait_for("nginx to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
    }

    /// The access log's lines so far: (method, uri, status, body bytes, range).
    pub fn requests(&self) -> Vec<(String, String, u16, u64, String)> {
        let log = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let mut f = l.splitn(5, ' ');
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                    f.next().unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// Body bytes nginx has sent so far, over all requests.
    pub fn bytes_sent(&self) -> u64 {
        self.requests().iter().map(|r| r.3).sum()
    }

    /// nginx's error log so far.
    pub fn errors(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
