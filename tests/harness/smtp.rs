//! A real SMTP server on loopback: Debian's aiosmtpd, run by a small Python
//! script this file writes into a temporary directory.
//!
//! The server binds 127.0.0.1:0 itself and prints its port, so there is no
//! race for a free port. Each accepted message is parsed by Python's `email`
//! package and written as one JSON file (envelope, login, decoded headers,
//! decoded parts, raw text), so tests assert on content rather than on
//! transfer encodings. Optionally it requires STARTTLS with a certificate
//! signed by a throw-away CA made with `openssl`, and AUTH with a fixed user
//! and password. The process is killed on drop. Self-contained: it needs
//! nothing else from the harness.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

const SERVER_SCRIPT: &str = r#"
import asyncio, email, json, os, socket, ssl, sys
from email import policy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

out_dir = sys.argv[1]
cert, key = os.environ.get("SMTP_CERT"), os.environ.get("SMTP_KEY")
user, password = os.environ.get("SMTP_USER"), os.environ.get("SMTP_PASSWORD")

class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)
        parts = []
        for part in msg.walk():
            if part.get_content_maintype() == "multipart":
                continue
            parts.append({"content_type": part.get_content_type(), "body": part.get_content()})
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data if session.authenticated else None,
            "tls": session.ssl is not None,
            "content_type": msg.get_content_type(),
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
            "raw": raw.decode("utf-8", "replace"),
        }
        tmp = os.path.join(out_dir, ".%04d.tmp" % self.count)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out_dir, "%04d.json" % self.count))
        return "250 Message accepted"

def authenticator(server, session, envelope, mechanism, auth_data):
    if (isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password):
        return AuthResult(success=True, auth_data=user)
    return AuthResult(success=False, handled=False)

async def main():
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    kwargs = {"hostname": "smtp.hoist.test", "decode_data": False}
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs.update(tls_context=context, require_starttls=True)
    if user:
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(cert))
    handler = Handler()
    await loop.create_server(lambda: SMTP(handler, **kwargs), sock=sock)
    print("PORT %d" % sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// How the server is set up.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// Require STARTTLS, with a certificate for `localhost` and 127.0.0.1
    /// signed by a CA written to [`SmtpServer::ca_file`].
    pub starttls: bool,
    /// Require AUTH with this user and password.
    pub login: Option<(String, String)>,
}

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The user that logged in, when AUTH was used.
    pub login: Option<String>,
    /// Whether the session was upgraded to TLS.
    pub tls: bool,
    /// `multipart/alternative`, ...
    pub content_type: String,
    /// Decoded headers (`Subject` is decoded from its RFC 2047 form).
    pub headers: BTreeMap<String, String>,
    /// Leaf parts: (content type, decoded body with CRLF line ends turned into LF).
    pub parts: Vec<(String, String)>,
    pub raw: String,
}

impl ReceivedMail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(t, _)| t == content_type)
            .map(|(_, b)| b.as_str())
    }
}

/// A running aiosmtpd; killed on drop.
pub struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    ca_file: Option<PathBuf>,
}

impl SmtpServer {
    /// Starts the server and waits until it listens (blocking, a second or so).
    pub fn start(options: SmtpOptions) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("mail directory");
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, SERVER_SCRIPT).expect("write the server script");

        let mut command = Command::new(PYTHON);
        command
            .arg(&script)
            .arg(&mail_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("server.log")).expect("server log"));
        let mut ca_file = None;
        if options.starttls {
            let (ca, cert, key) = make_certificates(dir.path());
            command.env("SMTP_CERT", cert).env("SMTP_KEY", key);
            ca_file = Some(ca);
        }
        if let Some((user, password)) = &options.login {
            command.env("SMTP_USER", user).env("SMTP_PASSWORD", password);
        }
        let mut child = command
            .spawn()
            .expect("start /usr/bin/python3 (is python3-aiosmtpd installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the port");
        let Some(port) = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()) else {
            child.kill().ok();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("the SMTP server did not start: {line:?}\n{log}");
        };
        SmtpServer {
            child,
            port,
            dir,
            ca_file,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (with `starttls`).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// What the server wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Messages received so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("mail directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| parse(&std::fs::read(f).expect("read a message")))
            .collect()
    }

    /// Waits until at least `count` messages arrived, or panics after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} message(s) within {limit:?}, got {}\nserver log:\n{}",
                messages.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn parse(bytes: &[u8]) -> ReceivedMail {
    let v: Value = serde_json::from_slice(bytes).expect("message JSON");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    ReceivedMail {
        mail_from: text(&v["mail_from"]),
        rcpt_tos: v["rcpt_tos"].as_array().into_iter().flatten().map(text).collect(),
        login: v["login"].as_str().map(str::to_string),
        tls: v["tls"].as_bool().unwrap_or(false),
        content_type: text(&v["content_type"]),
        headers: v["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
        parts: v["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (text(&p["content_type"]), text(&p["body"]).replace("\r\n", "\n")))
            .collect(),
        raw: text(&v["raw"]),
    }
}

/// Makes a CA and a server certificate for `localhost` / 127.0.0.1 signed by
/// it (rustls wants a SAN and refuses a CA certificate as the server's own).
/// Returns (CA file, certificate file, key file).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    std::fs::write(
        path("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions file");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hoist test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
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
            "server.pem",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (path("ca.pem"), path("server.pem"), path("server.key"))
}
