//! Named profiles of the AWS shared files, the way the AWS CLI and SDKs find them: the
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`, sections
//! `[NAME]`) and the config file (`AWS_CONFIG_FILE`, default `~/.aws/config`, sections
//! `[profile NAME]` and `[default]`).
//!
//! A profile gives static keys (`aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`), a `region` and an `endpoint_url`. Profiles that get their credentials
//! another way (`role_arn`, `credential_process`, `sso_*`, `web_identity_token_file`) are not
//! resolved here; they are refused with the command that exports their credentials instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a profile says.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// `aws_access_key_id`.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key` (never printed).
    pub secret_access_key: Option<String>,
    /// `aws_session_token` (never printed).
    pub session_token: Option<String>,
    /// `region`.
    pub region: Option<String>,
    /// `endpoint_url`.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Keys of a profile that name a way of getting credentials this module does not follow.
const OTHER_SOURCES: &[&str] = &[
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
];

/// The profile `name` (or `default` when `None`), reading the files that `var` (an environment
/// lookup) points at. `Ok(None)` when no profile was named and there is no `default` one.
///
/// # Errors
///
/// A message for a named profile found in neither file, or one that gets its credentials in a
/// way not followed here (with what to do instead).
pub fn load(
    name: Option<&str>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Profile>, String> {
    let home = var("HOME").map(PathBuf::from);
    let file = |env: &str, default: &str| {
        var(env)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let read = |p: &Option<PathBuf>| {
        p.as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| sections(&t))
            .unwrap_or_default()
    };
    let credentials = read(&credentials_file);
    let config = read(&config_file);
    let wanted = name.unwrap_or("default");
    let from_credentials = credentials.get(wanted);
    let from_config = config.get(&format!("profile {wanted}")).or_else(|| {
        (wanted == "default")
            .then(|| config.get("default"))
            .flatten()
    });
    if from_credentials.is_none() && from_config.is_none() {
        if name.is_none() {
            return Ok(None);
        }
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(no HOME)".into(), |p| p.display().to_string())
        };
        return Err(format!(
            "the AWS profile {wanted:?} is in neither {} nor {}: check AWS_PROFILE / [s3] profile, or create it with `aws configure --profile {wanted}`",
            shown(&credentials_file),
            shown(&config_file)
        ));
    }
    let get = |key: &str| {
        from_credentials
            .and_then(|s| s.get(key))
            .or_else(|| from_config.and_then(|s| s.get(key)))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let profile = Profile {
        name: wanted.to_owned(),
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint: get("endpoint_url"),
    };
    if profile.access_key_id.is_none()
        && let Some(other) = OTHER_SOURCES.iter().find(|k| get(k).is_some())
    {
        return Err(format!(
            "the AWS profile {wanted:?} gets its credentials through {other}, which pre-deploy does not follow: \
             export them first (`eval \"$(aws configure export-credentials --profile {wanted} --format env)\"`), \
             or use the environment's own role (web identity, container or instance credentials are followed)"
        ));
    }
    if profile.access_key_id.is_some() != profile.secret_access_key.is_some() {
        return Err(format!(
            "the AWS profile {wanted:?} has only one of aws_access_key_id and aws_secret_access_key"
        ));
    }
    Ok(Some(profile))
}

/// The sections of an INI-style AWS file: `[name]` headers, `key = value` lines, `#`/`;`
/// comments. Indented lines (nested settings such as `s3 =` blocks) are skipped.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = header.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &std::path::Path) -> impl Fn(&str) -> Option<String> + '_ {
        move |k| match k {
            "HOME" => Some(dir.display().to_string()),
            _ => None,
        }
    }

    fn write(dir: &std::path::Path, credentials: &str, config: &str) {
        std::fs::create_dir_all(dir.join(".aws")).expect("dir");
        std::fs::write(dir.join(".aws/credentials"), credentials).expect("credentials");
        std::fs::write(dir.join(".aws/config"), config).expect("config");
    }

    #[test]
    fn a_profile_takes_keys_from_credentials_and_region_and_endpoint_from_config() {
        let dir = tempfile::tempdir().expect("dir");
        write(
            dir.path(),
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[backup]\n# comment\naws_access_key_id=AKBACKUP\naws_secret_access_key = s2\naws_session_token = t2\n",
            "[default]\nregion = eu-west-1\n[profile backup]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = path\n",
        );
        let p = load(Some("backup"), &env(dir.path()))
            .expect("ok")
            .expect("found");
        assert_eq!(p.access_key_id.as_deref(), Some("AKBACKUP"));
        assert_eq!(p.secret_access_key.as_deref(), Some("s2"));
        assert_eq!(p.session_token.as_deref(), Some("t2"));
        assert_eq!(p.region.as_deref(), Some("eu-central-1"));
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!format!("{p:?}").contains("s2"), "Debug hides the secret");
        let d = load(None, &env(dir.path())).expect("ok").expect("default");
        assert_eq!(d.access_key_id.as_deref(), Some("AKDEFAULT"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn missing_and_unsupported_profiles_say_what_to_do() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(
            load(None, &env(dir.path())),
            Ok(None),
            "no files, no profile named"
        );
        write(
            dir.path(),
            "[half]\naws_access_key_id = AK\n",
            "[profile sso]\nsso_session = corp\n[profile assume]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = half\n",
        );
        let err = load(Some("nope"), &env(dir.path())).expect_err("missing");
        assert!(
            err.contains("\"nope\"") && err.contains("credentials"),
            "{err}"
        );
        let err = load(Some("assume"), &env(dir.path())).expect_err("assume role");
        assert!(
            err.contains("role_arn") && err.contains("export-credentials"),
            "{err}"
        );
        let err = load(Some("sso"), &env(dir.path())).expect_err("sso");
        assert!(err.contains("sso_session"), "{err}");
        let err = load(Some("half"), &env(dir.path())).expect_err("half");
        assert!(err.contains("only one of"), "{err}");
    }
}
