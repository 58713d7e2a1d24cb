//! Alerts: `[notify]` sends the outcome of a command to a generic webhook, Slack, a
//! healthchecks.io-style ping URL and email.
//!
//! A notifier never changes what a command did or its exit code: every channel that fails (an
//! unreachable URL, an HTTP error status, a refused SMTP session) comes back as a warning naming
//! the channel, with its URL redacted to `scheme://host/…` (webhook paths, Slack and healthchecks
//! URLs are secrets themselves, as are SMTP passwords).
//!
//! ```
//! use deploy_gate::{NotifyEvent, NotifyOutcome};
//!
//! let event = NotifyEvent::new("backup", Some("shop".into()), "production".into(), 5)
//!     .with_error("preflight failed: source db: connection refused".into(), None);
//! assert_eq!(event.outcome, NotifyOutcome::Failure);
//! assert_eq!(
//!     event.subject(),
//!     "pre-deploy: shop/production backup FAILED (exit 5)"
//! );
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::OneOrMany;
use crate::error::{GateError, Result};

/// How long each channel may take (connect, send, answer) before it counts as failed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// `[notify]` as written (also `[project.NAME.notify]`, merged key by key, and
/// `[env.NAME.notify]`, whose keys win). `${VAR}` is expanded in every value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// `"failure"` (default): only failures; `"always"`: every outcome. Pings ignore it.
    pub on: Option<String>,
    /// Generic JSON POST.
    pub webhook: Option<String>,
    /// Slack incoming webhook.
    pub slack: Option<String>,
    /// healthchecks.io-style ping URL: `URL/start`, `URL`, `URL/fail`.
    pub ping: Option<String>,
    /// `[notify.email]`.
    pub email: Option<EmailSection>,
}

impl NotifySection {
    /// `self` with the keys set in `over` replaced by `over`'s (an `[env.NAME.notify]` over
    /// the file's `[notify]`).
    pub fn overridden_by(&self, over: &NotifySection) -> NotifySection {
        NotifySection {
            on: over.on.clone().or_else(|| self.on.clone()),
            webhook: over.webhook.clone().or_else(|| self.webhook.clone()),
            slack: over.slack.clone().or_else(|| self.slack.clone()),
            ping: over.ping.clone().or_else(|| self.ping.clone()),
            email: over.email.clone().or_else(|| self.email.clone()),
        }
    }
}

/// `[notify.email]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// `smtp://[user:password@]host[:port]` (STARTTLS required; port 587 by default),
    /// `smtps://…` (implicit TLS; port 465), or `smtp://…?tls=none` (plain, for a local relay).
    pub smtp: Option<String>,
    /// The sender address.
    pub from: Option<String>,
    /// One recipient or a list.
    pub to: Option<OneOrMany>,
}

/// When the webhook, Slack and email channels send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Only when the command failed.
    #[default]
    Failure,
    /// After every command.
    Always,
}

/// How the SMTP session is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?tls=none`: no TLS (a relay on the same machine).
    None,
}

/// `[notify.email]`, checked.
#[derive(Clone)]
pub struct EmailSettings {
    /// The server URL (may hold a password: print [`EmailSettings::redacted`] instead).
    pub smtp: url::Url,
    /// How the session is protected.
    pub tls: SmtpTls,
    /// The sender.
    pub from: lettre::message::Mailbox,
    /// The recipients.
    pub to: Vec<lettre::message::Mailbox>,
}

impl EmailSettings {
    /// The server without credentials or query: `smtp://host:port`.
    pub fn redacted(&self) -> String {
        let mut u = self.smtp.clone();
        u.set_query(None);
        u.set_path("");
        redact_endpoint(u.as_str())
    }
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp", &self.redacted())
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish()
    }
}

/// `[notify]`, resolved: URLs expanded and checked. Its `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct NotifySettings {
    /// When the webhook, Slack and email channels send.
    pub on: NotifyOn,
    /// Generic JSON webhook.
    pub webhook: Option<url::Url>,
    /// Slack incoming webhook.
    pub slack: Option<url::Url>,
    /// healthchecks.io-style ping URL.
    pub ping: Option<url::Url>,
    /// Email.
    pub email: Option<EmailSettings>,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |u: &Option<url::Url>| u.as_ref().map(|u| redact_endpoint(u.as_str()));
        f.debug_struct("NotifySettings")
            .field("on", &self.on)
            .field("webhook", &r(&self.webhook))
            .field("slack", &r(&self.slack))
            .field("ping", &r(&self.ping))
            .field("email", &self.email)
            .finish()
    }
}

impl NotifySettings {
    /// Checks a section, `expand` replacing `${VAR}` in each value.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for an unknown `on`, a URL that does not parse or has the wrong
    /// scheme, an email section without `smtp`, `from` or `to`, or an address that does not
    /// parse. Messages never show a URL's secret parts.
    pub fn from_section(
        section: &NotifySection,
        expand: &dyn Fn(&str) -> Result<String>,
    ) -> Result<NotifySettings> {
        let on = match section.on.as_deref().map(expand).transpose()?.as_deref() {
            None | Some("failure") => NotifyOn::Failure,
            Some("always") => NotifyOn::Always,
            Some(other) => {
                return Err(GateError::usage(format!(
                    "[notify] on = {other:?}: expected \"failure\" or \"always\""
                )));
            }
        };
        let http = |key: &str, raw: &Option<String>| -> Result<Option<url::Url>> {
            let Some(raw) = raw else { return Ok(None) };
            let u = url::Url::parse(&expand(raw)?)
                .map_err(|e| GateError::usage(format!("[notify] {key} is not a URL ({e})")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(GateError::usage(format!(
                    "[notify] {key} = {}: expected an http:// or https:// URL",
                    redact_endpoint(u.as_str())
                )));
            }
            Ok(Some(u))
        };
        let email = section
            .email
            .as_ref()
            .map(|e| email(e, expand))
            .transpose()?;
        Ok(NotifySettings {
            on,
            webhook: http("webhook", &section.webhook)?,
            slack: http("slack", &section.slack)?,
            ping: http("ping", &section.ping)?,
            email,
        })
    }

    /// Whether any channel is configured.
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none()
            && self.slack.is_none()
            && self.ping.is_none()
            && self.email.is_none()
    }
}

fn email(e: &EmailSection, expand: &dyn Fn(&str) -> Result<String>) -> Result<EmailSettings> {
    let missing = |k: &str| GateError::usage(format!("[notify.email] needs `{k}`"));
    let raw = e.smtp.as_deref().ok_or_else(|| missing("smtp"))?;
    let smtp = url::Url::parse(&expand(raw)?)
        .map_err(|err| GateError::usage(format!("[notify.email] smtp is not a URL ({err})")))?;
    let tls_query = smtp
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls = match (smtp.scheme(), tls_query.as_deref()) {
        ("smtp", None | Some("required")) => SmtpTls::StartTls,
        ("smtp", Some("none")) => SmtpTls::None,
        ("smtps", None) => SmtpTls::Implicit,
        _ => {
            return Err(GateError::usage(format!(
                "[notify.email] smtp = {}: expected smtp://host[:587] (STARTTLS), \
                 smtps://host[:465], or smtp://host?tls=none for a local relay",
                redact_endpoint(smtp.as_str())
            )));
        }
    };
    if smtp.host_str().is_none_or(str::is_empty) {
        return Err(GateError::usage("[notify.email] smtp has no host"));
    }
    let address = |what: &str, raw: &str| -> Result<lettre::message::Mailbox> {
        expand(raw)?.parse().map_err(|err| {
            GateError::usage(format!(
                "[notify.email] {what} {raw:?} is not an address ({err})"
            ))
        })
    };
    let from = address("from", e.from.as_deref().ok_or_else(|| missing("from"))?)?;
    let to =
        e.to.clone()
            .ok_or_else(|| missing("to"))?
            .into_vec()
            .iter()
            .map(|t| address("to", t))
            .collect::<Result<Vec<_>>>()?;
    if to.is_empty() {
        return Err(missing("to"));
    }
    Ok(EmailSettings {
        smtp,
        tls,
        from,
        to,
    })
}

/// A URL as it may be printed: `scheme://host[:port]`, with `/…` when it had a path or a query
/// (webhook, Slack and healthchecks paths are secrets), never its userinfo.
pub fn redact_endpoint(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return "***".into();
    };
    let Some(host) = u.host_str() else {
        return format!("{}:***", u.scheme());
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let more = if u.path().len() > 1 || u.query().is_some() {
        "/…"
    } else {
        ""
    };
    format!("{}://{host}{port}{more}", u.scheme())
}

/// Whether a command succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOutcome {
    /// Exit code 0.
    Success,
    /// Any other exit code.
    Failure,
}

/// What a command came to, as the channels report it. The webhook posts it as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyEvent {
    /// The project (`None` for a config without projects).
    pub project: Option<String>,
    /// The environment.
    pub environment: String,
    /// The command: `run`, `backup`, `verify`, `status`, `prune`, `restore`.
    pub command: String,
    /// `success` or `failure`.
    pub outcome: NotifyOutcome,
    /// The command's exit code.
    pub exit_code: u8,
    /// The backup made, verified or restored, when there is one.
    pub backup_id: Option<String>,
    /// Its stored size in bytes.
    pub stored_bytes: Option<u64>,
    /// How long the command took, in seconds.
    pub duration_seconds: Option<f64>,
    /// How long the snapshot took, in seconds.
    pub snapshot_seconds: Option<f64>,
    /// The error (already free of secrets, as every error the tool prints).
    pub message: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The machine that ran the command.
    pub host: String,
    /// The version of pre-deploy.
    pub version: String,
}

impl NotifyEvent {
    /// An event for `command` on `project`/`environment` that ended with `exit_code`.
    pub fn new(
        command: &str,
        project: Option<String>,
        environment: String,
        exit_code: u8,
    ) -> NotifyEvent {
        NotifyEvent {
            project,
            environment,
            command: command.to_owned(),
            outcome: if exit_code == 0 {
                NotifyOutcome::Success
            } else {
                NotifyOutcome::Failure
            },
            exit_code,
            backup_id: None,
            stored_bytes: None,
            duration_seconds: None,
            snapshot_seconds: None,
            message: None,
            hint: None,
            host: crate::host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// With the failure's message and hint.
    #[must_use]
    pub fn with_error(mut self, message: String, hint: Option<String>) -> NotifyEvent {
        self.message = Some(message);
        self.hint = hint;
        self
    }

    /// `project/environment`, or the environment alone.
    pub fn label(&self) -> String {
        match &self.project {
            Some(p) => format!("{p}/{}", self.environment),
            None => self.environment.clone(),
        }
    }

    /// The email subject: `pre-deploy: shop/production backup FAILED (exit 5)`.
    pub fn subject(&self) -> String {
        match self.outcome {
            NotifyOutcome::Success => {
                format!("pre-deploy: {} {} succeeded", self.label(), self.command)
            }
            NotifyOutcome::Failure => format!(
                "pre-deploy: {} {} FAILED (exit {})",
                self.label(),
                self.command,
                self.exit_code
            ),
        }
    }

    /// The facts as plain text, one per line (the email body, the Slack message).
    pub fn text(&self) -> String {
        let mut lines = vec![self.subject()];
        if let Some(m) = &self.message {
            lines.push(format!("error: {m}"));
        }
        if let Some(h) = &self.hint {
            lines.push(format!("hint: {h}"));
        }
        lines.push(String::new());
        let mut fact = |k: &str, v: String| lines.push(format!("{k:<10} {v}"));
        fact(
            "project",
            self.project.clone().unwrap_or_else(|| "-".into()),
        );
        fact("env", self.environment.clone());
        fact("command", self.command.clone());
        fact("exit code", self.exit_code.to_string());
        if let Some(id) = &self.backup_id {
            fact("backup", id.clone());
        }
        if let Some(b) = self.stored_bytes {
            fact("stored", crate::human_bytes(b));
        }
        if let Some(s) = self.duration_seconds {
            fact("took", format!("{s:.1} s"));
        }
        if let Some(s) = self.snapshot_seconds {
            fact("snapshot", format!("{s:.1} s"));
        }
        fact("host", self.host.clone());
        fact("version", format!("pre-deploy {}", self.version));
        lines.join("\n")
    }
}

/// Sends events to the configured channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    settings: NotifySettings,
    timeout: Duration,
}

impl Notifier {
    /// A notifier for `settings`, each channel limited to [`NOTIFY_TIMEOUT`].
    pub fn new(settings: NotifySettings) -> Notifier {
        Notifier {
            settings,
            timeout: NOTIFY_TIMEOUT,
        }
    }

    /// The same with another limit per channel.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Notifier {
        self.timeout = timeout;
        self
    }

    /// Whether any channel is configured.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    fn client(&self) -> std::result::Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("pre-deploy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| describe_http(&e))
    }

    /// The ping `URL/start`, when a ping URL is configured: call it before the command runs.
    /// Returns the warnings (see [`Notifier::send`]).
    pub async fn start(&self) -> Vec<String> {
        let Some(ping) = &self.settings.ping else {
            return Vec::new();
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return vec![format!("notify ping: {e}")],
        };
        match post(
            &client,
            &suffixed(ping, "start"),
            String::new(),
            "text/plain",
        )
        .await
        {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "notify ping {}: {e}",
                redact_endpoint(ping.as_str())
            )],
        }
    }

    /// Sends `event` to every configured channel, all at once, each within the timeout: the
    /// ping always (`URL` or `URL/fail`), the webhook, Slack and email when `on` asks for this
    /// outcome. Returns one warning per channel that failed, naming it, its URL redacted.
    pub async fn send(&self, event: &NotifyEvent) -> Vec<String> {
        let s = &self.settings;
        let wanted = s.on == NotifyOn::Always || event.outcome == NotifyOutcome::Failure;
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return vec![format!("notify: {e}")],
        };
        let mut jobs: Vec<futures::future::BoxFuture<'_, Option<String>>> = Vec::new();
        let warn = |channel: &str, url: &url::Url, r: std::result::Result<(), String>| {
            r.err()
                .map(|e| format!("notify {channel} {}: {e}", redact_endpoint(url.as_str())))
        };
        if let Some(ping) = &s.ping {
            let url = match event.outcome {
                NotifyOutcome::Success => ping.clone(),
                NotifyOutcome::Failure => suffixed(ping, "fail"),
            };
            let client = &client;
            jobs.push(Box::pin(async move {
                warn(
                    "ping",
                    ping,
                    post(client, &url, event.text(), "text/plain").await,
                )
            }));
        }
        if wanted && let Some(hook) = &s.webhook {
            let body = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
            let client = &client;
            jobs.push(Box::pin(async move {
                warn(
                    "webhook",
                    hook,
                    post(client, hook, body, "application/json").await,
                )
            }));
        }
        if wanted && let Some(slack) = &s.slack {
            let body = slack_body(event).to_string();
            let client = &client;
            jobs.push(Box::pin(async move {
                warn(
                    "slack",
                    slack,
                    post(client, slack, body, "application/json").await,
                )
            }));
        }
        if wanted && let Some(email) = &s.email {
            let timeout = self.timeout;
            jobs.push(Box::pin(async move {
                send_email(email, event, timeout)
                    .await
                    .err()
                    .map(|e| format!("notify email {}: {e}", email.redacted()))
            }));
        }
        futures::future::join_all(jobs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// `URL/what`, keeping a query.
fn suffixed(url: &url::Url, what: &str) -> url::Url {
    let mut u = url.clone();
    let path = format!("{}/{what}", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

/// The Slack incoming-webhook message: the subject in bold, then the facts.
fn slack_body(event: &NotifyEvent) -> serde_json::Value {
    let icon = match event.outcome {
        NotifyOutcome::Success => ":white_check_mark:",
        NotifyOutcome::Failure => ":rotating_light:",
    };
    let text = event.text();
    let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
    serde_json::json!({
        "text": format!("{icon} {head}\n{rest}"),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("{icon} *{head}*") } },
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("```{}```", rest.trim()) } },
        ],
    })
}

/// An HTTP error without the URL (reqwest puts it in its messages), with its causes.
fn describe_http(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        // A cause may quote the URL; never print one.
        if !s.contains("://") && !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}

async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    body: String,
    content_type: &str,
) -> std::result::Result<(), String> {
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| describe_http(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered HTTP {status}"))
    }
}

async fn send_email(
    email: &EmailSettings,
    event: &NotifyEvent,
    timeout: Duration,
) -> std::result::Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut message = Message::builder()
        .from(email.from.clone())
        .subject(event.subject());
    for to in &email.to {
        message = message.to(to.clone());
    }
    let message = message
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(event.text())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let host = email.smtp.host_str().unwrap_or_default();
    let builder = match email.tls {
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host,
        )),
    }
    .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut builder = builder.timeout(Some(timeout));
    if let Some(port) = email.smtp.port() {
        builder = builder.port(port);
    }
    if let Some(password) = email.smtp.password() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            decode(email.smtp.username()),
            decode(password),
        ));
    }
    let transport = builder.build();
    match tokio::time::timeout(timeout * 2, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_vars(s: &str) -> Result<String> {
        Ok(s.to_owned())
    }

    fn section(text: &str) -> NotifySection {
        toml::from_str(text).expect("section parses")
    }

    #[test]
    fn endpoints_are_redacted_to_scheme_and_host() {
        assert_eq!(
            redact_endpoint("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_endpoint("https://user:pw@hooks.example:8443/x?token=t"),
            "https://hooks.example:8443/…"
        );
        assert_eq!(
            redact_endpoint("smtp://u:pw@mail.example:587"),
            "smtp://mail.example:587"
        );
        assert_eq!(redact_endpoint("not a url pw"), "***");
    }

    #[test]
    fn defaults_and_choices_of_on() {
        let s = NotifySettings::from_section(&section(""), &no_vars).expect("empty");
        assert_eq!(s.on, NotifyOn::Failure);
        assert!(s.is_empty());
        let s = NotifySettings::from_section(&section("on = \"always\""), &no_vars).expect("on");
        assert_eq!(s.on, NotifyOn::Always);
        let e = NotifySettings::from_section(&section("on = \"sometimes\""), &no_vars)
            .expect_err("unknown on");
        assert!(e.to_string().contains("sometimes"), "{e}");
    }

    #[test]
    fn bad_urls_are_usage_errors_without_secrets() {
        let e = NotifySettings::from_section(
            &section("webhook = \"ftp://u:hunter2@h/secretpath\""),
            &no_vars,
        )
        .expect_err("ftp");
        let text = e.to_string();
        assert!(text.contains("ftp://h/…"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("secretpath"),
            "{text}"
        );
        assert_eq!(e.exit_code().code(), 2);
        let e = NotifySettings::from_section(
            &section("[email]\nsmtp = \"smtp://u:hunter2@mail?tls=maybe\"\nfrom = \"a@b.c\"\nto = \"d@e.f\""),
            &no_vars,
        )
        .expect_err("tls=maybe");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn email_settings_parse_and_debug_hides_the_password() {
        let s = NotifySettings::from_section(
            &section(
                "[email]\nsmtp = \"smtp://ops:${PW}@mail.example\"\nfrom = \"pre-deploy@example.com\"\nto = [\"a@example.com\", \"b@example.com\"]",
            ),
            &|s: &str| Ok(s.replace("${PW}", "hunter2")),
        )
        .expect("email");
        let email = s.email.as_ref().expect("email set");
        assert_eq!(email.tls, SmtpTls::StartTls);
        assert_eq!(email.to.len(), 2);
        assert_eq!(email.smtp.password(), Some("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        for (url, tls) in [
            ("smtps://mail.example", SmtpTls::Implicit),
            ("smtp://127.0.0.1:2525?tls=none", SmtpTls::None),
        ] {
            let s = NotifySettings::from_section(
                &section(&format!(
                    "[email]\nsmtp = \"{url}\"\nfrom = \"a@b.c\"\nto = \"d@e.f\""
                )),
                &no_vars,
            )
            .expect("email");
            let email = s.email.expect("email");
            assert_eq!(email.tls, tls);
            assert!(!email.redacted().contains('?'), "{}", email.redacted());
        }
        let e = NotifySettings::from_section(&section("[email]\nsmtp = \"smtp://m\""), &no_vars)
            .expect_err("no from");
        assert!(e.to_string().contains("from"), "{e}");
    }

    #[test]
    fn env_keys_win_over_the_file() {
        let file = section("on = \"always\"\nwebhook = \"https://a/1\"");
        let env = section("webhook = \"https://b/2\"");
        let merged = file.overridden_by(&env);
        assert_eq!(merged.on.as_deref(), Some("always"));
        assert_eq!(merged.webhook.as_deref(), Some("https://b/2"));
    }

    #[test]
    fn ping_suffixes_keep_the_query() {
        let u = url::Url::parse("https://hc-ping.com/uuid?create=1").expect("url");
        assert_eq!(
            suffixed(&u, "fail").as_str(),
            "https://hc-ping.com/uuid/fail?create=1"
        );
        let u = url::Url::parse("https://hc-ping.com/uuid/").expect("url");
        assert_eq!(
            suffixed(&u, "start").as_str(),
            "https://hc-ping.com/uuid/start"
        );
    }

    #[test]
    fn the_example_of_docs_operations_md_resolves() {
        let doc = include_str!("../../docs/operations.md");
        let alerts = doc.split("## Alerts").nth(1).expect("an Alerts section");
        let block = alerts
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let file = crate::config::parse_config(block).expect("the example parses");
        let s = NotifySettings::from_section(&file.notify, &|s: &str| {
            Ok(s.replace("${SMTP_PASSWORD}", "pw")
                .replace("${WEBHOOK_TOKEN}", "t")
                .replace("${SLACK_WEBHOOK}", "T/B/x")
                .replace("${HC_UUID}", "u"))
        })
        .expect("the example resolves");
        assert_eq!(s.on, NotifyOn::Failure);
        assert!(s.webhook.is_some() && s.slack.is_some() && s.ping.is_some());
        let email = s.email.expect("email");
        assert_eq!(email.tls, SmtpTls::StartTls);
        assert_eq!(email.redacted(), "smtp://mail.example:587");
    }

    #[test]
    fn the_event_reads_as_text_and_json() {
        let mut e = NotifyEvent::new("backup", None, "default".into(), 0);
        e.backup_id = Some("20261202T023012Z-4be1a0".into());
        e.stored_bytes = Some(2048);
        assert_eq!(e.subject(), "pre-deploy: default backup succeeded");
        assert!(e.text().contains("20261202T023012Z-4be1a0"));
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["stored_bytes"], 2048);
        let slack = slack_body(&e);
        assert!(
            slack["text"]
                .as_str()
                .is_some_and(|t| t.contains("succeeded"))
        );
    }
}
