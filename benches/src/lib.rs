//! Shared parts of the benchmark runners (`bench-backup`, `bench-s3`): timing commands under
//! GNU time, the throwaway PostgreSQL with its dataset loaders, and password redaction.

pub mod exec;
pub mod pg;

/// Errors are reported, not handled: any failure aborts the benchmark.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Replace the password of every `scheme://user:password@` in `s` by `***`.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("db=postgres://postgres:s3cret@127.0.0.1:5432/d2 --store x"),
            "db=postgres://postgres:***@127.0.0.1:5432/d2 --store x"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("a://x:y@h b://p:q@h/"), "a://x:***@h b://p:***@h/");
    }
}
