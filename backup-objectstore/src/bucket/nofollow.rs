//! File access below a root directory that never follows a symbolic link.
//!
//! Directory sources are often written by someone else (an application's uploads), and
//! pre-deploy often runs as root: a link planted in a source must not make a snapshot read
//! `/etc/shadow`, and a link in a restore target must not make a restore write outside it.
//!
//! # What is guaranteed
//!
//! The root itself is opened as the operator named it (a link in *its* path is the
//! operator's choice). Below it, every path is resolved one segment at a time with `openat`
//! relative to the descriptor of the directory above, with `O_NOFOLLOW`: a symbolic link met on
//! the way, present before or swapped in while we work, is refused, never traversed. There is
//! no window between a check and a use, because there is no separate check: the refusal is the
//! open itself. A file read is opened `O_NOFOLLOW | O_NONBLOCK` and must be a regular file by
//! `fstat` on the open descriptor (a FIFO cannot block a snapshot, a device is never read).
//! Restored files are created `O_EXCL | O_NOFOLLOW` in a directory held open and renamed
//! inside it; a rename replaces a link at the final name, it never writes through one.
//!
//! What is not: a directory held open can be *moved* elsewhere by someone with write access to
//! both places while we work; our writes follow the directory there. That needs write access to
//! the destination, so it lets nobody write where they could not already.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat};

/// What was found at a path below the root.
#[derive(Debug)]
pub(crate) enum Found<T> {
    /// What was asked for.
    Yes(T),
    /// Nothing there (a segment is missing).
    Missing,
    /// The path (relative to the root, `/`-separated, up to and including the offending
    /// segment) is a symbolic link.
    Link(String),
    /// The path is something else than asked for (a file where a directory must be, a
    /// directory or a FIFO where a file must be).
    Other(String),
}

/// Opens `root` (following links in its own path: the operator named it).
///
/// # Errors
///
/// The `open` error, e.g. `NotFound` or `NotADirectory`.
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The type of `name` in `dir`, not following a link; `None` when it does not exist.
pub(crate) fn lstat(dir: &OwnedFd, name: impl AsRef<OsStr>) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file type of a `stat`.
pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Opens the directory `segments` below `root`, one segment at a time, never following a link.
/// With `create`, missing directories are made (mode `0777` less the umask, as `mkdir -p`).
///
/// # Errors
///
/// I/O errors other than a missing segment, a link, or a non-directory in the way.
pub(crate) fn open_dir<S: AsRef<str>>(
    root: &OwnedFd,
    segments: &[S],
    create: bool,
) -> io::Result<Found<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current: Option<OwnedFd> = None;
    let mut walked = String::new();
    for segment in segments {
        let segment = segment.as_ref();
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(segment);
        let parent = current.as_ref().unwrap_or(root);
        let mut attempt = 0;
        let next = loop {
            attempt += 1;
            match rustix::fs::openat(parent, segment, flags, Mode::empty()) {
                Ok(fd) => break fd,
                Err(rustix::io::Errno::NOENT) if create && attempt == 1 => {
                    match rustix::fs::mkdirat(parent, segment, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
                // O_NOFOLLOW on a link: ELOOP, or ENOTDIR with O_DIRECTORY; tell them apart.
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Ok(match lstat(parent, segment)? {
                        None => Found::Missing,
                        Some(st) if file_type(&st) == FileType::Symlink => Found::Link(walked),
                        Some(_) => Found::Other(walked),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        current = Some(next);
    }
    match current {
        Some(fd) => Ok(Found::Yes(fd)),
        None => Ok(Found::Yes(root.try_clone()?)),
    }
}

/// Opens the regular file `name` in `dir` for reading, never following a link and never
/// opening anything but a regular file for reading (`O_NONBLOCK`, then `fstat`). `shown` is
/// the file's path for [`Found::Link`] and [`Found::Other`].
///
/// # Errors
///
/// I/O errors other than a missing file, a link or another kind of file.
pub(crate) fn open_file(
    dir: &OwnedFd,
    name: &str,
    shown: &str,
) -> io::Result<Found<std::fs::File>> {
    // A device is opened by no one but its owner (root): check first, so that opening it
    // never has a side effect; the fstat below is the check that counts.
    match lstat(dir, name)? {
        None => return Ok(Found::Missing),
        Some(st) if file_type(&st) == FileType::Symlink => return Ok(Found::Link(shown.into())),
        Some(st) if file_type(&st) != FileType::RegularFile => {
            return Ok(Found::Other(shown.into()));
        }
        Some(_) => {}
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
        Err(rustix::io::Errno::LOOP) => return Ok(Found::Link(shown.into())),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if file_type(&st) != FileType::RegularFile {
        return Ok(Found::Other(shown.into()));
    }
    Ok(Found::Yes(std::fs::File::from(fd)))
}

/// Opens the regular file at `key` (`/`-separated, relative) below `root` for reading, never
/// following a link (see [`open_file`]).
///
/// # Errors
///
/// As [`open_dir`] and [`open_file`].
pub(crate) fn open_file_below(root: &Path, key: &str) -> io::Result<Found<std::fs::File>> {
    let segments: Vec<&str> = key.split('/').collect();
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Ok(Found::Missing); // no file of a directory walk has such a key
    }
    let (name, parents) = segments.split_last().unwrap_or((&"", &[]));
    let root = open_root(root)?;
    match open_dir(&root, parents, false)? {
        Found::Yes(dir) => open_file(&dir, name, key),
        Found::Missing => Ok(Found::Missing),
        Found::Link(p) => Ok(Found::Link(p)),
        Found::Other(p) => Ok(Found::Other(p)),
    }
}

/// Creates `name` in `dir` for writing: it must not exist (`O_EXCL`), never through a link,
/// mode `0600`.
///
/// # Errors
///
/// The `open` error (`AlreadyExists` when the name is taken).
pub(crate) fn create_new(dir: &OwnedFd, name: &str) -> io::Result<std::fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(std::fs::File::from(fd))
}

/// Renames `from` to `to`, both in `dir`; a link at `to` is replaced, not followed.
///
/// # Errors
///
/// The `rename` error (e.g. `IsADirectory` when `to` is a directory).
pub(crate) fn rename(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Removes the file `name` from `dir` (not following a link: a link is removed itself).
///
/// # Errors
///
/// The `unlink` error.
pub(crate) fn remove_file(dir: &OwnedFd, name: impl AsRef<OsStr>) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name.as_ref(), AtFlags::empty())?)
}

/// One entry of a directory: its name (bytes, as the file system holds it) and, when the
/// file system says without a `stat`, its type.
pub(crate) struct Entry {
    /// The name.
    pub(crate) name: std::ffi::OsString,
    /// Its type, when `readdir` reports one (`None`: ask [`lstat`]).
    pub(crate) kind: Option<FileType>,
}

/// The entries of `dir`, without `.` and `..`.
///
/// # Errors
///
/// The `readdir` error.
pub(crate) fn entries(dir: &OwnedFd) -> io::Result<Vec<Entry>> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => None,
            k => Some(k),
        };
        out.push(Entry {
            name: OsStr::from_bytes(name).to_owned(),
            kind,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_below_the_root_are_never_followed() {
        let base = tempfile::tempdir().expect("tempdir");
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), b"secret").expect("write");
        std::fs::write(root.join("real/file"), b"file").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("dirlink")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("secret"), root.join("filelink")).expect("symlink");
        std::os::unix::fs::symlink(&outside, root.join("real/deeper")).expect("symlink");
        let fifo = root.join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .expect("mkfifo");

        let read = |key: &str| match open_file_below(&root, key).expect(key) {
            Found::Yes(_) => "file".to_owned(),
            Found::Missing => "missing".to_owned(),
            Found::Link(p) => format!("link {p}"),
            Found::Other(p) => format!("other {p}"),
        };
        assert_eq!(read("real/file"), "file");
        assert_eq!(read("dirlink/secret"), "link dirlink");
        assert_eq!(read("filelink"), "link filelink");
        assert_eq!(read("real/deeper/secret"), "link real/deeper");
        assert_eq!(read("fifo"), "other fifo", "a FIFO never blocks a read");
        assert_eq!(read("real"), "other real");
        assert_eq!(read("nothing/here"), "missing");
        assert_eq!(read("a/../filelink"), "missing");

        let root_fd = open_root(&root).expect("root");
        assert!(matches!(
            open_dir(&root_fd, &["dirlink", "x"], true).expect("open"),
            Found::Link(p) if p == "dirlink"
        ));
        assert!(
            !outside.join("x").exists(),
            "nothing was created through the link"
        );
        assert!(matches!(
            open_dir(&root_fd, &["real", "file", "x"], true).expect("open"),
            Found::Other(p) if p == "real/file"
        ));
        let Found::Yes(made) = open_dir(&root_fd, &["new", "sub"], true).expect("open") else {
            panic!("created");
        };
        create_new(&made, "f").expect("create");
        assert!(root.join("new/sub/f").is_file());
        rename(&made, "f", "g").expect("rename");
        remove_file(&made, "g").expect("remove");
        assert!(!root.join("new/sub/g").exists());
    }
}
