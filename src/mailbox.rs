//! Mail stores on disk, for batches: telling a Maildir, an mbox file, a plain directory and a
//! single message apart; splitting an mbox into messages and writing one (mboxrd quoting); and
//! output names that never overwrite anything.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What an input path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One message (or CMS object) in a file.
    File(PathBuf),
    /// A directory of messages (not a Maildir): each regular file is one.
    Dir(PathBuf),
    /// A Maildir (cur/, new/, tmp/).
    Maildir(PathBuf),
    /// An mbox file (messages separated by "From " lines).
    Mbox(PathBuf),
}

/// Classifies `path` by what is on disk.
pub fn classify(path: &Path) -> Result<Source> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    if meta.is_dir() {
        let is_maildir = ["cur", "new", "tmp"].iter().all(|d| path.join(d).is_dir());
        return Ok(if is_maildir {
            Source::Maildir(path.to_path_buf())
        } else {
            Source::Dir(path.to_path_buf())
        });
    }
    let mut head = [0u8; 5];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?,
        &mut head,
    )
    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    Ok(if &head[..n] == b"From " {
        Source::Mbox(path.to_path_buf())
    } else {
        Source::File(path.to_path_buf())
    })
}

/// The regular files of a directory, sorted by name (hidden files skipped).
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One message of an mbox: its "From " separator line and the message (quoting removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    pub from_line: Vec<u8>,
    pub message: Vec<u8>,
}

/// Splits an mbox at "From " lines that start a message (at the start or after a blank line,
/// as mutt and procmail write them); `>From ` quoting (mboxrd) is removed from the messages.
pub fn split_mbox(data: &[u8]) -> Vec<MboxMessage> {
    let mut out: Vec<MboxMessage> = Vec::new();
    let mut prev_blank = true;
    for line in data.split_inclusive(|b| *b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if prev_blank && content.starts_with(b"From ") {
            if let Some(last) = out.last_mut() {
                // The blank line before a separator belongs to the mbox format.
                trim_one_blank_line(&mut last.message);
            }
            out.push(MboxMessage {
                from_line: content.to_vec(),
                message: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            let unquoted = match content.iter().position(|b| *b != b'>') {
                Some(n) if n > 0 && content[n..].starts_with(b"From ") => &line[1..],
                _ => line,
            };
            last.message.extend_from_slice(unquoted);
        }
        prev_blank = content.is_empty();
    }
    if let Some(last) = out.last_mut() {
        trim_one_blank_line(&mut last.message);
    }
    out
}

fn trim_one_blank_line(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n\n") {
        message.truncate(message.len() - 1);
    }
}

/// One mbox entry: the separator, the message with LF line endings and mboxrd quoting, and the
/// blank line that ends it.
pub fn mbox_entry(from_line: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + from_line.len() + 16);
    out.extend_from_slice(from_line);
    out.push(b'\n');
    let lf = to_lf(message);
    for line in lf.split_inclusive(|b| *b == b'\n') {
        let gt = line.iter().take_while(|b| **b == b'>').count();
        if line[gt..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// CRLF line endings become LF (mail stores on disk use the local convention).
pub fn to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// `dir/name`, or `dir/stem.N.ext` with the first free N: nothing is ever overwritten.
pub fn unique_path(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let path = Path::new(name);
    let stem = path
        .file_stem()
        .unwrap_or(name)
        .to_string_lossy()
        .to_string();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()));
    (1..)
        .map(|n| dir.join(format!("{stem}.{n}{}", ext.as_deref().unwrap_or(""))))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_unquotes_and_writes_back() {
        let mbox = b"From a@x Sun Nov 22 05:00:00 2026\nSubject: one\n\n>From here\nbody\n\n\
From b@x Sun Nov 22 05:01:00 2026\nSubject: two\n\n>From inside is quoted\n";
        let msgs = split_mbox(mbox);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].message, b"Subject: one\n\nFrom here\nbody\n");
        assert_eq!(msgs[1].from_line, b"From b@x Sun Nov 22 05:01:00 2026");
        assert_eq!(msgs[1].message, b"Subject: two\n\nFrom inside is quoted\n");
        let entry = mbox_entry(
            &msgs[0].from_line,
            b"Subject: one\r\n\r\nFrom here\r\n>From there\r\n",
        );
        assert_eq!(
            entry,
            b"From a@x Sun Nov 22 05:00:00 2026\nSubject: one\n\n>From here\n>>From there\n\n"
        );
        let again = split_mbox(&entry);
        assert_eq!(
            again[0].message,
            b"Subject: one\n\nFrom here\n>From there\n"
        );
    }

    #[test]
    fn unique_names_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::new("msg.eml");
        assert_eq!(unique_path(dir.path(), name), dir.path().join("msg.eml"));
        std::fs::write(dir.path().join("msg.eml"), "x").unwrap();
        std::fs::write(dir.path().join("msg.1.eml"), "x").unwrap();
        assert_eq!(unique_path(dir.path(), name), dir.path().join("msg.2.eml"));
    }

    #[test]
    fn maildir_mbox_and_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.path().join("box").join(d)).unwrap();
        }
        std::fs::write(dir.path().join("mbox"), "From x\n\nhi\n").unwrap();
        std::fs::write(dir.path().join("one.eml"), "Subject: x\n\nhi\n").unwrap();
        assert!(matches!(
            classify(&dir.path().join("box")).unwrap(),
            Source::Maildir(_)
        ));
        assert!(matches!(
            classify(&dir.path().join("mbox")).unwrap(),
            Source::Mbox(_)
        ));
        assert!(matches!(
            classify(&dir.path().join("one.eml")).unwrap(),
            Source::File(_)
        ));
        assert!(matches!(classify(dir.path()).unwrap(), Source::Dir(_)));
    }
}
