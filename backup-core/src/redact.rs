//! Redaction of URLs for messages: a source or store URL may hold a password (in its userinfo
//! or its query); nothing that reaches a log, an error or a manifest shows it.

/// A URL with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let scheme_only = || {
        url.split(':')
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            })
            .map_or_else(|| "***".to_owned(), |s| format!("{s}:***"))
    };
    let Ok(mut u) = url::Url::parse(url) else {
        return scheme_only();
    };
    // A known scheme with a host; anything else (`db:postgres://app:pw@h/d`, a mistyped flag)
    // may hold a secret anywhere.
    let known = matches!(
        u.scheme(),
        "postgres" | "postgresql" | "mysql" | "mariadb" | "s3" | "file" | "ssh" | "docker"
    );
    if !known || u.cannot_be_a_base() {
        return scheme_only();
    }
    // No host, and credentials-looking text in the path (`postgres:///app:pw@db/app`, one slash
    // too many): the path may hold the secret.
    let hostless = u.host_str().is_none_or(str::is_empty);
    if hostless && u.scheme() != "file" && u.path().contains('@') {
        return scheme_only();
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if SHOWN_QUERY_KEYS.contains(&k.as_ref()) {
                v.into_owned()
            } else {
                "***".to_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Query parameters whose values [`redact_url`] shows; every other value (`password`,
/// `sslpassword`, keys of services yet unknown) is masked.
const SHOWN_QUERY_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "channel_binding",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "endpoint",
    "region",
    "allow_http",
    "path_style",
    "via",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_unknown_query_values_are_masked() {
        assert_eq!(
            redact_url("postgres://a:hunter2@h/d?password=x"),
            "postgres://a:***@h/d?password=***"
        );
        assert_eq!(redact_url("db:postgres://app:hunter2@h/d"), "db:***");
        assert_eq!(redact_url("not a url hunter2"), "***");
        assert_eq!(redact_url("mysql://u:hunter2@h/d"), "mysql://u:***@h/d");
    }
}
