//! The bucket datasets (B1, B2), the rclone remotes that reach the Garage server, and the
//! independent checks of what the tool stored.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use benches::Res;
use benches::exec::run_plain;
use predeploy_tests::s3::S3Server;

/// One bucket dataset of BENCHMARKS.md.
#[derive(Debug, Clone, Copy)]
pub struct BucketSet {
    /// `B1` or `B2`.
    pub id: &'static str,
    /// Number of objects.
    pub objects: usize,
    /// Size of each object in bytes.
    pub size: usize,
}

impl BucketSet {
    /// The full-size datasets: 2,000 × 64 KiB and 100 × 4 MiB.
    pub fn full() -> [BucketSet; 2] {
        [
            BucketSet {
                id: "B1",
                objects: 2000,
                size: 64 << 10,
            },
            BucketSet {
                id: "B2",
                objects: 100,
                size: 4 << 20,
            },
        ]
    }

    /// Tiny versions for `--quick`.
    pub fn quick() -> [BucketSet; 2] {
        [
            BucketSet {
                id: "B1",
                objects: 100,
                size: 64 << 10,
            },
            BucketSet {
                id: "B2",
                objects: 5,
                size: 4 << 20,
            },
        ]
    }

    /// `2000 × 64 KiB`.
    pub fn describe(&self) -> String {
        let size = if self.size >= 1 << 20 {
            format!("{} MiB", self.size >> 20)
        } else {
            format!("{} KiB", self.size >> 10)
        };
        format!("{} × {size} objects", self.objects)
    }

    /// Writes the objects as files under `dir`, spread over nested prefixes, with bytes from a
    /// seeded generator (incompressible, the same on every run).
    pub fn generate(&self, dir: &Path) -> Res<()> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ self.size as u64;
        let mut buf = vec![0u8; self.size];
        for i in 0..self.objects {
            let sub = dir.join(format!("{:02}/{:02}", i % 16, (i / 16) % 8));
            fs::create_dir_all(&sub)?;
            for chunk in buf.chunks_mut(8) {
                // xorshift64*: fast and deterministic; content only needs to be unique.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            fs::File::create(sub.join(format!("object-{i:05}.bin")))?.write_all(&buf)?;
        }
        Ok(())
    }
}

/// The environment that defines the rclone remotes `src:` and `dst:` for `server` (two remotes
/// with the same settings, so that `rclone copy src: dst:` streams every object through rclone
/// instead of asking the server for a server-side copy), plus the `AWS_*` variables the tool
/// reads. No config file is read.
pub fn s3_env(server: &dyn S3Server) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("RCLONE_CONFIG".into(), "/dev/null".into()),
        // rclone's AWS SDK refuses a custom CA bundle with its own HTTP transport, and these
        // machines set one; empty means unset to it (the endpoint is plain HTTP anyway).
        ("AWS_CA_BUNDLE".into(), "".into()),
    ];
    for remote in ["SRC", "DST"] {
        for (k, v) in [
            ("TYPE", "s3".to_owned()),
            ("PROVIDER", "Other".to_owned()),
            ("ENDPOINT", server.endpoint()),
            ("REGION", server.region().to_owned()),
            ("FORCE_PATH_STYLE", "true".to_owned()),
            ("ACCESS_KEY_ID", server.access_key().to_owned()),
            ("SECRET_ACCESS_KEY", server.secret_key().to_owned()),
        ] {
            env.push((format!("RCLONE_CONFIG_{remote}_{k}").into(), v.into()));
        }
    }
    for (k, v) in server.env() {
        env.push((k.into(), v.into()));
    }
    env
}

/// An untimed rclone command with `env`.
pub fn rclone(env: &[(OsString, OsString)], args: &[&str]) -> Res<String> {
    let mut cmd = Command::new("rclone");
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    run_plain(cmd, &format!("rclone {}", args.join(" ")))
}

/// Number of objects `rclone lsf -R --files-only` lists under `remote_path`.
pub fn count_objects(env: &[(OsString, OsString)], remote_path: &str) -> Res<usize> {
    let out = rclone(env, &["lsf", "-R", "--files-only", remote_path])?;
    Ok(out.lines().filter(|l| !l.is_empty()).count())
}
