//! Segment files: named by their first record's sequence number, zero-filled when made (a
//! spare is prepared ahead), listed in order for `Wal::read`.

use super::*;

pub(super) fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// The file `prepare_spare` fills; not a segment name, so `read` ignores a leftover one.
pub(super) const SPARE: &str = "spare.tmp";

/// A zero-filled segment named for `first`. A failure leaves no file under that name: `read`
/// would take it for a segment that follows the current one.
pub(super) fn new_segment(dir: &Path, first: u64, faults: &Faults) -> Result<File, WalError> {
    let path = dir.join(segment_name(first));
    let made = zero_filled(&path, faults).and_then(|()| {
        // The new file's name must survive a crash too.
        File::open(dir)?.sync_all()?;
        Ok(())
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    // Groups are written from the start, over the zeros.
    Ok(OpenOptions::new().write(true).open(&path)?)
}

/// An empty segment that grows as groups are written: for a disk without room for a
/// zero-filled one.
pub(super) fn growing_segment(dir: &Path, first: u64) -> Result<File, WalError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

pub(super) fn is_no_space(e: &WalError) -> bool {
    matches!(e, WalError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
}

pub(super) fn zero_filled(path: &Path, faults: &Faults) -> Result<(), WalError> {
    faults.check(FaultPoint::LogCreate)?;
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    Ok(())
}

pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    Ok(out)
}
