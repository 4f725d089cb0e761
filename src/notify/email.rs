//! Email over SMTP with lettre: configuration, the message (pure) and the send.
//!
//! `HOIST_SMTP_URL` is `smtp://user:pass@host:port?tls=starttls|implicit|none`
//! (STARTTLS by default; `smtps://` means implicit TLS). It is a secret: its
//! problems never echo it, and the password is scrubbed from every SMTP error
//! text (lettre's own texts never contain it, but a server's reply could).
//! The message is multipart/alternative: the plain text of
//! [`render::plain_text`] and an HTML rendering whose every value is escaped.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::render::{self, Tone};
use super::{error_text, keys, scrub, BoxFuture, Channel, Notification, NotifyError, SendError};
use crate::secret::Secret;
use crate::settings::Reader;
use crate::tls::install_crypto_provider;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: only for a relay on the same host or network (port 25).
    None,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Where and how to connect, from `HOIST_SMTP_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
}

impl SmtpSettings {
    /// Parses `smtp[s]://[user[:pass]@]host[:port][?tls=starttls|implicit|none]`.
    /// User and password are percent-decoded. The error never contains the text.
    pub fn parse(text: &str) -> Result<SmtpSettings, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
        let mut tls = match url.scheme() {
            "smtp" => SmtpTls::StartTls,
            "smtps" => SmtpTls::Implicit,
            _ => return Err("the URL must start with smtp:// or smtps://".into()),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err("the URL has no host".into()),
        };
        if !matches!(url.path(), "" | "/") {
            return Err("the URL must not have a path".into());
        }
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "starttls") => tls = SmtpTls::StartTls,
                ("tls", "implicit") => tls = SmtpTls::Implicit,
                ("tls", "none") => tls = SmtpTls::None,
                ("tls", _) => return Err("tls must be starttls, implicit or none".into()),
                _ => return Err("the only query parameter understood is tls".into()),
            }
        }
        let username = Some(percent_decode(url.username())?).filter(|u| !u.is_empty());
        let password = url
            .password()
            .map(percent_decode)
            .transpose()?
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        if password.is_some() && username.is_none() {
            return Err("the URL has a password but no user name".into());
        }
        Ok(SmtpSettings {
            port: url.port().unwrap_or(tls.default_port()),
            host,
            tls,
            username,
            password,
        })
    }
}

/// Decodes `%XX` escapes; the error does not show the text (it is part of a secret).
fn percent_decode(text: &str) -> Result<String, String> {
    let bad = || "the user name or password has an invalid %-escape".to_string();
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Everything the email channel needs.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    pub smtp: SmtpSettings,
    /// `HOIST_EMAIL_FROM`.
    pub from: Mailbox,
    /// `HOIST_EMAIL_TO`, comma-separated.
    pub to: Vec<Mailbox>,
    /// `HOIST_SMTP_CA_FILE`: PEM certificates trusted besides the webpki roots
    /// (a company CA, or a test's self-signed one).
    pub ca_file: Option<PathBuf>,
}

impl EmailConfig {
    /// Reads the email keys; `None` when `HOIST_SMTP_URL` is unset (the other
    /// keys are then a problem, since they would do nothing).
    pub fn from_reader(reader: &mut Reader<'_>) -> Option<EmailConfig> {
        let url = reader.secret(keys::SMTP_URL);
        let from_text = reader.string(keys::EMAIL_FROM);
        let to_text = reader.string(keys::EMAIL_TO);
        let ca_text = reader.string(keys::SMTP_CA_FILE);
        let Some(url) = url else {
            for (key, value) in [
                (keys::EMAIL_FROM, from_text),
                (keys::EMAIL_TO, to_text),
                (keys::SMTP_CA_FILE, ca_text),
            ] {
                if let Some(value) = value {
                    reader.problem(
                        key,
                        Some(value),
                        format!(
                            "has no effect without {}; set it too, or unset this",
                            keys::SMTP_URL
                        ),
                    );
                }
            }
            return None;
        };
        let smtp = SmtpSettings::parse(url.expose())
            .map_err(|message| reader.problem(keys::SMTP_URL, None, message))
            .ok();
        let from = match from_text {
            None => {
                let message = format!("required when {} is set", keys::SMTP_URL);
                reader.problem(keys::EMAIL_FROM, None, message);
                None
            }
            Some(text) => text
                .parse::<Mailbox>()
                .map_err(|e| {
                    reader.problem(
                        keys::EMAIL_FROM,
                        Some(text.clone()),
                        format!("not an address: {e}"),
                    )
                })
                .ok(),
        };
        let to = match to_text {
            None => {
                let message = format!("required when {} is set", keys::SMTP_URL);
                reader.problem(keys::EMAIL_TO, None, message);
                None
            }
            Some(text) => parse_recipients(&text)
                .map_err(|message| reader.problem(keys::EMAIL_TO, Some(text.clone()), message))
                .ok(),
        };
        let ca_file = ca_text.map(PathBuf::from);
        if let Some(path) = &ca_file {
            if let Err(detail) = read_ca(path) {
                reader.problem(keys::SMTP_CA_FILE, Some(path.display().to_string()), detail);
            }
        }
        Some(EmailConfig {
            smtp: smtp?,
            from: from?,
            to: to?,
            ca_file,
        })
    }
}

/// `a@example.test, Ops <ops@example.test>`. Display names with commas are not supported.
fn parse_recipients(text: &str) -> Result<Vec<Mailbox>, String> {
    let mut to = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        to.push(
            part.parse::<Mailbox>()
                .map_err(|e| format!("{part:?} is not an address: {e}"))?,
        );
    }
    if to.is_empty() {
        return Err("no address given".into());
    }
    Ok(to)
}

fn read_ca(path: &std::path::Path) -> Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    Certificate::from_pem(&pem).map_err(|e| format!("no PEM certificate in it: {e}"))
}

/// Sends to a list of addresses through one SMTP server.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Only for scrubbing error texts; lettre holds its own copy to log in.
    password: Option<Secret<String>>,
    timeout: Duration,
    authenticates: bool,
}

impl Email {
    /// Sets up the transport (reading `ca_file`); connects nothing yet.
    pub fn new(config: &EmailConfig, timeout: Duration) -> Result<Email, NotifyError> {
        install_crypto_provider();
        let smtp = &config.smtp;
        let tls_parameters = || -> Result<TlsParameters, NotifyError> {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &config.ca_file {
                let certificate = read_ca(path).map_err(|detail| NotifyError::CaFile {
                    path: path.clone(),
                    detail,
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            builder.build().map_err(|e| NotifyError::Smtp(e.to_string()))
        };
        let tls = match smtp.tls {
            SmtpTls::StartTls => Tls::Required(tls_parameters()?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &smtp.username {
            let password = smtp
                .password
                .as_ref()
                .map(|p| p.expose().clone())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Email {
            transport: builder.build(),
            from: config.from.clone(),
            to: config.to.clone(),
            password: smtp.password.clone(),
            timeout,
            authenticates: smtp.username.is_some(),
        })
    }

    /// Turns a lettre error into a [`SendError`] without the password.
    fn error(&self, error: lettre::transport::smtp::Error) -> SendError {
        if error.is_timeout() {
            return SendError::Timeout(self.timeout);
        }
        let detail = error_text(&error);
        let password = self.password.as_ref().map_or("", |p| p.expose().as_str());
        let detail = scrub(detail, &[password]);
        // A refusal (5xx: wrong password, unknown recipient), a certificate
        // problem or our own bug will not go away by trying again; a 4xx
        // reply or a broken connection may.
        let permanent = error.is_permanent() || error.is_tls() || error.is_client();
        SendError::Smtp {
            transient: !permanent,
            detail,
        }
    }
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let message = message(notification, &self.from, &self.to)?;
            self.transport
                .send(message)
                .await
                .map(drop)
                .map_err(|e| self.error(e))
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(async move {
            match self.transport.test_connection().await {
                Ok(true) if self.authenticates => {
                    Ok("smtp server accepted the connection and the login".into())
                }
                Ok(true) => Ok("smtp server accepted the connection".into()),
                Ok(false) => Err(SendError::Smtp {
                    transient: true,
                    detail: "the server did not answer NOOP".into(),
                }),
                Err(e) => Err(self.error(e)),
            }
        })
    }
}

/// The email for one notification: subject is the title, body is plain text
/// and HTML alternatives.
pub fn message(notification: &Notification, from: &Mailbox, to: &[Mailbox]) -> Result<Message, SendError> {
    let m = render::message(notification);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(m.title.clone())
        .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")).to_string());
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            render::plain_text(&m),
            html(&m),
        ))
        .map_err(|e| SendError::Invalid(e.to_string()))
}

/// The HTML part. Every value is escaped; styles are inline because mail
/// clients drop `<style>` elements.
pub fn html(m: &render::Message) -> String {
    let color = |tone: Tone| match tone {
        Tone::Good => "#1a7f37",
        Tone::Warning => "#9a6700",
        Tone::Bad => "#cf222e",
        Tone::Info => "#0969da",
    };
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n");
    out.push_str("<body style=\"font-family: sans-serif; font-size: 14px;\">\n");
    out.push_str(&format!(
        "<h2 style=\"color: {};\">{}</h2>\n",
        color(m.tone),
        escape_html(&m.title)
    ));
    if let Some(summary) = &m.summary {
        out.push_str(&format!("<p>{}</p>\n", escape_html(summary)));
    }
    out.push_str("<table style=\"border-collapse: collapse;\">\n");
    let row = |out: &mut String, label: &str, value: &str| {
        out.push_str(&format!(
            "<tr><th style=\"text-align: left; padding: 2px 12px 2px 0;\">{}</th><td>{}</td></tr>\n",
            escape_html(label),
            value
        ));
    };
    for fact in &m.facts {
        let value = match fact.label {
            "Image" | "Digest" | "Revision" => format!("<code>{}</code>", escape_html(&fact.value)),
            _ => escape_html(&fact.value),
        };
        row(&mut out, fact.label, &value);
    }
    row(
        &mut out,
        "New digest",
        &format!("<code>{}</code>", escape_html(&m.new_digest)),
    );
    out.push_str("</table>\n<h3>Targets</h3>\n<ul>\n");
    for t in &m.targets {
        out.push_str(&format!(
            "<li><strong>{}</strong>: <span style=\"color: {};\">{}</span>",
            escape_html(&t.name),
            color(t.tone),
            escape_html(t.outcome)
        ));
        if let Some(old) = &t.old_digest {
            out.push_str(&format!(" (was <code>{}</code>)", escape_html(old)));
        }
        if let Some(reason) = &t.reason {
            out.push_str(&format!(": {}", escape_html(reason)));
        }
        if !t.log_tail.is_empty() {
            out.push_str("\n<pre style=\"background: #f6f8fa; padding: 8px;\">");
            if t.log_truncated {
                out.push_str("…\n");
            }
            let lines: Vec<String> = t.log_tail.iter().map(|l| escape_html(l)).collect();
            out.push_str(&lines.join("\n"));
            out.push_str("</pre>");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n<p style=\"color: #656d76; font-size: 12px;\">Sent by hoist</p>\n</body></html>\n");
    out
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::deploy::Outcome;
    use crate::notify::render::tests::{notification, target};

    #[test]
    fn smtp_urls() {
        let s = SmtpSettings::parse("smtp://mailer:p%40ss%3Aword@mail.example.test").unwrap();
        assert_eq!(s.host, "mail.example.test");
        assert_eq!(s.port, 587);
        assert_eq!(s.tls, SmtpTls::StartTls);
        assert_eq!(s.username.as_deref(), Some("mailer"));
        assert_eq!(s.password.as_ref().unwrap().expose(), "p@ss:word");

        let s = SmtpSettings::parse("smtp://mail.example.test?tls=implicit").unwrap();
        assert_eq!(
            (s.port, s.tls, s.username, s.password),
            (465, SmtpTls::Implicit, None, None)
        );
        let s = SmtpSettings::parse("smtps://mail.example.test:2465").unwrap();
        assert_eq!((s.port, s.tls), (2465, SmtpTls::Implicit));
        let s = SmtpSettings::parse("smtp://127.0.0.1?tls=none").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 25, SmtpTls::None));
        let s = SmtpSettings::parse("smtp://[::1]:2525/?tls=none").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 2525));
    }

    #[test]
    fn bad_smtp_urls_are_not_echoed() {
        for bad in [
            "http://u:SECRET@host",
            "smtp://u:SECRET@host?tls=maybe",
            "smtp://u:SECRET@host?user=x",
            "smtp://u:SECRET@host/path",
            "smtp://u:SECRET%zz@host",
            "smtp://:SECRET@host",
            "smtp://u:SECRET@:25",
            "SECRET",
        ] {
            let error = SmtpSettings::parse(bad).unwrap_err();
            assert!(!error.contains("SECRET"), "{bad}: {error}");
        }
    }

    fn read(pairs: &[(&'static str, &str)]) -> (Option<EmailConfig>, Vec<crate::settings::ConfigProblem>) {
        let vars: HashMap<&'static str, String> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut reader = Reader::new(&vars);
        let config = EmailConfig::from_reader(&mut reader);
        (config, reader.problems)
    }

    #[test]
    fn config_from_vars() {
        let (config, problems) = read(&[
            (keys::SMTP_URL, "smtp://u:pw@mail.example.test"),
            (keys::EMAIL_FROM, "hoist <hoist@example.test>"),
            (keys::EMAIL_TO, "ops@example.test, Dev Team <dev@example.test>,"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        assert_eq!(config.from.to_string(), "hoist <hoist@example.test>");
        let to: Vec<String> = config.to.iter().map(|m| m.to_string()).collect();
        assert_eq!(to, vec!["ops@example.test", "Dev Team <dev@example.test>"]);
    }

    #[test]
    fn config_problems() {
        let (config, problems) = read(&[(keys::SMTP_URL, "smtp://u:SECRET@mail.example.test?tls=bogus")]);
        assert!(config.is_none());
        let keys_found: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys_found, vec![keys::SMTP_URL, keys::EMAIL_FROM, keys::EMAIL_TO]);
        assert_eq!(problems[0].value, None);
        assert!(!format!("{problems:?}").contains("SECRET"));

        let (_, problems) = read(&[
            (keys::SMTP_URL, "smtp://mail.example.test"),
            (keys::EMAIL_FROM, "not an address"),
            (keys::EMAIL_TO, "ops@example.test, nope"),
            (keys::SMTP_CA_FILE, "/nonexistent/ca.pem"),
        ]);
        let keys_found: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(
            keys_found,
            vec![keys::EMAIL_FROM, keys::EMAIL_TO, keys::SMTP_CA_FILE]
        );
        assert!(
            problems[1].message.contains("\"nope\""),
            "{}",
            problems[1].message
        );

        let (config, problems) = read(&[(keys::EMAIL_TO, "ops@example.test")]);
        assert!(config.is_none());
        assert_eq!(problems[0].key, keys::EMAIL_TO);
        assert!(problems[0].message.contains(keys::SMTP_URL));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let n = notification(vec![target(
            "<b>web</b>",
            Outcome::RolledBack {
                reason: "exit & <died>".into(),
                log_tail: vec!["<script>alert(1)</script>".into()],
            },
        )]);
        let html = html(&render::message(&n));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>web"));
        assert!(html.contains("<strong>&lt;b&gt;web&lt;/b&gt;</strong>"));
        assert!(html.contains(": exit &amp; &lt;died&gt;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;</pre>"));
    }

    #[test]
    fn message_headers_and_parts() {
        let from: Mailbox = "hoist <hoist@example.test>".parse().unwrap();
        let to: Vec<Mailbox> = vec![
            "ops@example.test".parse().unwrap(),
            "dev@example.test".parse().unwrap(),
        ];
        let n = notification(vec![target("web", Outcome::Updated)]);
        let message = message(&n, &from, &to).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("From: hoist <hoist@example.test>\r\n"), "{text}");
        assert!(
            text.contains("To: ops@example.test, dev@example.test\r\n"),
            "{text}"
        );
        assert!(text.contains("Subject: Updated registry.example.test/team/app:1.4 (1 target)\r\n"));
        assert!(text.contains("Content-Type: multipart/alternative;"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8"));
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 2);
    }
}
