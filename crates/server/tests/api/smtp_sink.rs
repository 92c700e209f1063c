//! A real SMTP server for tests: listens on 127.0.0.1:0, speaks plain SMTP (EHLO, AUTH, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT) and keeps every message it receives for the test to read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long a test waits for a mail before failing.
const MAIL_DEADLINE: Duration = Duration::from_secs(15);

pub struct SmtpSink {
    pub addr: SocketAddr,
    inbox: Arc<Inbox>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Inbox {
    mails: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
}

/// One message as the relay saw it: the envelope, the AUTH user, and the raw DATA.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub auth_user: Option<String>,
    pub raw: String,
    /// The AUTH password, so a test can see which secret reached the relay.
    pub auth_password: Option<String>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP sink");
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Inbox::default());
        let accept = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(session(stream, inbox.clone()));
                }
            }
        });
        SmtpSink { addr, inbox, accept }
    }

    /// A `concord` that sends its mail through this sink: plain SMTP with credentials, so the
    /// server is not in dev mode.
    pub fn app(&self) -> crate::helpers::TestAppBuilder {
        let env = [
            ("SMTP_HOST", "127.0.0.1".to_owned()),
            ("SMTP_PORT", self.addr.port().to_string()),
            ("SMTP_SECURITY", "none".to_owned()),
            ("SMTP_USERNAME", "concord".to_owned()),
            ("SMTP_PASSWORD", "sink-password".to_owned()),
            ("SMTP_FROM_EMAIL", "noreply@concord.test".to_owned()),
            ("SMTP_FROM_NAME", "Concord Test".to_owned()),
        ];
        env.into_iter().fold(crate::helpers::TestApp::builder(), |builder, (k, v)| builder.env(k, v))
    }

    /// A `concord` that sends its mail through this sink as a relay that needs no login: only
    /// `SMTP_HOST` and the port are set, no username or password.
    pub fn relay_app(&self) -> crate::helpers::TestAppBuilder {
        crate::helpers::TestApp::builder()
            .env("SMTP_HOST", "127.0.0.1")
            .env("SMTP_PORT", self.addr.port().to_string())
            .env("SMTP_SECURITY", "none")
    }

    /// Removes and returns the oldest mail addressed to `to`, waiting for it if needed.
    pub async fn next_mail_to(&self, to: &str) -> ReceivedMail {
        let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
        loop {
            // Registering interest before looking means a mail arriving in between still wakes us.
            let arrived = self.inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(mail) = self.take(to) {
                return mail;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("no mail to {to} within {MAIL_DEADLINE:?}");
            }
        }
    }

    /// How many mails to `to` arrived and were not taken yet.
    pub fn count_to(&self, to: &str) -> usize {
        self.inbox.mails.lock().unwrap().iter().filter(|m| m.to.iter().any(|r| r == to)).count()
    }

    fn take(&self, to: &str) -> Option<ReceivedMail> {
        let mut mails = self.inbox.mails.lock().unwrap();
        let index = mails.iter().position(|m| m.to.iter().any(|r| r == to))?;
        Some(mails.remove(index))
    }
}

async fn session(stream: TcpStream, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let reply =
        async |write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| write.write_all(text.as_bytes()).await.is_ok();
    if !reply(&mut write, "220 sink.test ESMTP ready\r\n").await {
        return;
    }
    let (mut from, mut to, mut auth_user, mut auth_password) = (String::new(), Vec::new(), None, None);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_owned(),
            "HELO" | "NOOP" => "250 OK\r\n".to_owned(),
            "RSET" => {
                (from, to) = (String::new(), Vec::new());
                "250 OK\r\n".to_owned()
            }
            "AUTH" => {
                let (user, password) = authenticate(&command, &mut lines, &mut write).await;
                (auth_user, auth_password) = (Some(user), Some(password));
                "235 2.7.0 Authentication successful\r\n".to_owned()
            }
            "MAIL" => {
                from = angle_address(&command);
                "250 OK\r\n".to_owned()
            }
            "RCPT" => {
                to.push(angle_address(&command));
                "250 OK\r\n".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let raw = read_data(&mut lines).await;
                let mail = ReceivedMail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    auth_user: auth_user.clone(),
                    raw,
                    auth_password: auth_password.clone(),
                };
                inbox.mails.lock().unwrap().push(mail);
                inbox.arrived.notify_waiters();
                "250 OK queued\r\n".to_owned()
            }
            "QUIT" => {
                reply(&mut write, "221 Bye\r\n").await;
                return;
            }
            _ => "502 Command not implemented\r\n".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

/// Handles `AUTH PLAIN [initial]` and `AUTH LOGIN`, returning the user name and password sent.
async fn authenticate(
    command: &str,
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = command.split(' ').skip(1);
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let mut ask = async |prompt: &str| {
        write.write_all(format!("334 {prompt}\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        lines.read_line(&mut answer).await.unwrap();
        String::from_utf8(b64.decode(answer.trim_end()).unwrap_or_default()).unwrap_or_default()
    };
    if mechanism == "LOGIN" {
        let user = ask("VXNlcm5hbWU6").await;
        let password = ask("UGFzc3dvcmQ6").await;
        return (user, password);
    }
    let initial = match words.next() {
        Some(initial) => String::from_utf8(b64.decode(initial).unwrap_or_default()).unwrap_or_default(),
        None => ask("").await,
    };
    // PLAIN is "authzid NUL authcid NUL password".
    let mut parts = initial.split('\0').skip(1);
    (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned())
}

fn angle_address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..].find('>').map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}

/// Reads DATA up to the lone `.` line, undoing dot-stuffing.
async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 || line == ".\r\n" {
            return raw;
        }
        raw.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}

impl ReceivedMail {
    /// A top-level header's value, continuation lines unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(self.raw.split("\r\n\r\n").next().unwrap_or(""), name)
    }

    /// The decoded `text/plain` part.
    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_else(|| panic!("no text/plain part in\n{}", self.raw))
    }

    /// The decoded `text/html` part.
    pub fn html(&self) -> String {
        self.part("text/html").unwrap_or_else(|| panic!("no text/html part in\n{}", self.raw))
    }

    /// The first `http(s)://` link in the text part.
    pub fn link(&self) -> String {
        let text = self.text();
        let start = text.find("http").unwrap_or_else(|| panic!("no link in\n{text}"));
        text[start..].split_whitespace().next().unwrap().to_owned()
    }

    /// The value of the `token` query parameter of the first link.
    pub fn link_token(&self) -> String {
        let link = self.link();
        let (_, query) = link.split_once("token=").unwrap_or_else(|| panic!("no token in {link}"));
        query.split('&').next().unwrap().to_owned()
    }

    /// The first run of exactly six digits on a line of its own in the text part.
    pub fn code(&self) -> String {
        let text = self.text();
        text.lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no 6-digit code in\n{text}"))
            .to_owned()
    }

    fn part(&self, content_type: &str) -> Option<String> {
        let (headers, body) = self.raw.split_once("\r\n\r\n")?;
        let top_type = header_in(headers, "Content-Type").unwrap_or_default();
        let Some(boundary) = parameter(&top_type, "boundary") else {
            return top_type.starts_with(content_type).then(|| decode(headers, body));
        };
        body.split(&format!("--{boundary}")).skip(1).find_map(|part| {
            let (headers, body) = part.trim_start_matches("\r\n").split_once("\r\n\r\n")?;
            header_in(headers, "Content-Type")?.starts_with(content_type).then(|| decode(headers, body))
        })
    }
}

fn header_in(headers: &str, name: &str) -> Option<String> {
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

fn parameter(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|p| {
        let (key, value) = p.trim().split_once('=')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim_matches('"').to_owned())
    })
}

fn decode(headers: &str, body: &str) -> String {
    let encoding = header_in(headers, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact).expect("valid base64 body")
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).expect("UTF-8 body").trim_end().to_owned()
}

fn decode_quoted_printable(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("valid quoted-printable escape"));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[tokio::test]
async fn sink_receives_a_mail_sent_by_the_mailer_over_real_smtp() {
    use concord_core::email::Email;
    use concord_server::config::{MailConfig, SmtpConfig, SmtpSecurity};
    use concord_server::mail::{Mailer, sign_in_mail};

    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&MailConfig::Smtp(SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port: sink.addr.port(),
        security: SmtpSecurity::None,
        credentials: Some(("concord".to_owned(), "secret".parse().unwrap())),
        from_email: "noreply@concord.test".to_owned(),
        from_name: "Concord Test".to_owned(),
    }))
    .unwrap();
    assert!(!mailer.is_dev());
    let long_link = format!("http://localhost:5173/auth/verify?token={}", "A".repeat(43));
    let to = Email::parse("Alice@Example.com").unwrap();
    mailer.send(sign_in_mail(to, &long_link, "042917", 15)).await.unwrap();

    let mail = sink.next_mail_to("alice@example.com").await;
    assert_eq!(mail.from, "noreply@concord.test");
    assert_eq!(mail.auth_user.as_deref(), Some("concord"));
    assert_eq!(mail.auth_password.as_deref(), Some("secret"));
    assert_eq!(mail.header("Subject").as_deref(), Some("Sign in to Diaryx"));
    assert_eq!(mail.header("From").as_deref(), Some("\"Concord Test\" <noreply@concord.test>"));
    assert_eq!(mail.link(), long_link);
    assert_eq!(mail.link_token(), "A".repeat(43));
    assert_eq!(mail.code(), "042917");
    assert!(mail.html().contains(&long_link));
    assert!(mail.text().contains("15 minutes"));
    assert_eq!(sink.count_to("alice@example.com"), 0, "the mail was taken");
}

#[tokio::test]
async fn a_relay_that_refuses_connections_is_reported_not_hung_on() {
    use concord_core::email::Email;
    use concord_server::config::{MailConfig, SmtpConfig, SmtpSecurity};
    use concord_server::mail::{MailError, Mailer, confirm_mail};

    // Bind then drop, so the port is closed.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mailer = Mailer::new(&MailConfig::Smtp(SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port,
        security: SmtpSecurity::None,
        credentials: Some(("u".to_owned(), "p".parse().unwrap())),
        from_email: "noreply@concord.test".to_owned(),
        from_name: "Concord".to_owned(),
    }))
    .unwrap();
    let mail = confirm_mail(Email::parse("bob@example.com").unwrap(), "http://x/confirm?token=t");
    assert!(matches!(mailer.send(mail).await, Err(MailError::Send(_))));
}
