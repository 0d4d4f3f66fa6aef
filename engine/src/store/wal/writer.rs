//! The writer thread: takes the records appended since the last group, writes and syncs them
//! as one group at the end of the segment, rotates segments, and keeps a failed group to write
//! again at the same offset until it goes through.

use super::*;

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unpoisoned()
    }

    /// The writer thread: takes whatever was appended, writes (and syncs) it as one group,
    /// wakes that group's writers, and goes on at once if more was appended meanwhile.
    pub(super) fn run_writer(&self) {
        let mut st = self.lock();
        loop {
            if st.stuck.is_some() && st.stop {
                return;
            }
            if let Some(stuck) = st.stuck.take() {
                st = self.retry(st, stuck);
                continue;
            }
            let due = st.wanted > st.taken || st.buffer.len() >= BUFFER_BYTES || st.stop;
            if (st.buffer.is_empty() || !due) && !st.rotate_wanted {
                if st.stop || st.failed.is_some() {
                    return;
                }
                st.writer_idle = true;
                st = self.work.wait(st).unpoisoned();
                st.writer_idle = false;
                continue;
            }
            st.check();
            let mut group = std::mem::take(&mut st.buffer);
            let upto = st.next_seq;
            let count = upto - st.taken;
            let number = st.groups_taken;
            let rotate = std::mem::take(&mut st.rotate_wanted);
            st.groups_taken += 1;
            st.taken = upto;
            drop(st);
            let started = std::time::Instant::now();
            let result = self.write_group(&group, upto, rotate);
            self.write_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.groups.fetch_add(1, Ordering::Relaxed);
            self.records.fetch_add(count, Ordering::Relaxed);
            st = self.lock();
            match result {
                Ok(rotation) => {
                    assert!(upto >= st.durable, "a group made the log less durable");
                    st.durable = upto;
                    if rotate {
                        st.rotation_failed = rotation.err().map(|e| e.to_string());
                    }
                    if st.buffer.is_empty() {
                        // Keep the allocation for the next group.
                        group.clear();
                        st.buffer = group;
                    }
                }
                Err(e) => {
                    // Its writers are told the outcome is unknown; the group is kept and
                    // written again, at the same offset, until it goes through.
                    st.failed = Some(e.to_string());
                    st.stuck = Some(Stuck { group, upto });
                }
            }
            st.check();
            if rotate {
                st.rotations += 1;
                self.rotations_cv.notify_all();
            }
            let durable = st.durable;
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.callbacks)
                .into_iter()
                .partition(|(seq, _)| *seq < durable || st.failed.is_some());
            st.callbacks = waiting;
            let failed = st.failed.clone();
            if failed.is_some() {
                // Everyone waiting, in either group, hears of it.
                self.done.iter().for_each(Condvar::notify_all);
                self.rotations_cv.notify_all();
            } else {
                self.done[(number % 2) as usize].notify_all();
            }
            if !ready.is_empty() {
                drop(st);
                for (_, done) in ready {
                    done(failed.clone().map_or(Ok(()), |e| Err(WalError::Failed(e))));
                }
                st = self.lock();
            }
        }
    }

    /// Tries a stuck group again (after `RETRY_EVERY`, or at once when `recover` asks).
    pub(super) fn retry<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, State>,
        stuck: Stuck,
    ) -> std::sync::MutexGuard<'a, State> {
        if !st.retry_now && !st.stop {
            st.writer_idle = true;
            st = self.work.wait_timeout(st, RETRY_EVERY).unpoisoned().0;
            st.writer_idle = false;
        }
        if st.stop {
            // Closing: the group's writers were told its outcome is unknown.
            st.stuck = Some(stuck);
            return st;
        }
        st.retry_now = false;
        drop(st);
        let result = self.write_group(&stuck.group, stuck.upto, false);
        let mut st = self.lock();
        st.retries += 1;
        match result {
            Ok(_) => {
                st.durable = stuck.upto;
                st.failed = None;
            }
            Err(e) => {
                st.failed = Some(e.to_string());
                st.stuck = Some(stuck);
            }
        }
        self.rotations_cv.notify_all();
        st
    }

    /// Writes a group where the segment's written part ends (so that a group tried again
    /// after a failure overwrites what it left, and the records stay contiguous) and syncs it.
    /// Then, if the segment is full or a rotation was asked for, starts the next segment; a
    /// rotation that fails does not fail the group, which is durable (the inner result).
    pub(super) fn write_group(&self, group: &[u8], upto: u64, rotate: bool) -> Result<Result<(), WalError>, WalError> {
        let mut segment = self.segment.lock().unpoisoned();
        let offset = segment.bytes;
        segment.file.seek(std::io::SeekFrom::Start(offset))?;
        if let Err(e) = self.faults.check(FaultPoint::LogWrite) {
            // As a full disk does: part of the group reaches the file, then the write fails.
            segment.file.write_all(&group[..group.len() / 2])?;
            return Err(e.into());
        }
        segment.file.write_all(group)?;
        if self.sync_data {
            self.faults.check(FaultPoint::LogSync)?;
            segment.file.sync_data()?;
        }
        segment.bytes = offset + group.len() as u64;
        if segment.bytes >= SEGMENT_BYTES || (rotate && segment.bytes > 0) {
            return Ok(self.next_segment(&mut segment, upto));
        }
        Ok(Ok(()))
    }

    /// Closes the segment (synced whole before the next one exists) and starts the next at
    /// `upto`: the spare, renamed, or a new one.
    pub(super) fn next_segment(&self, segment: &mut Segment, upto: u64) -> Result<(), WalError> {
        self.faults.check(FaultPoint::LogSync)?;
        segment.file.sync_data()?;
        let mut spare = self.spare.lock().unpoisoned();
        let path = self.dir.join(segment_name(upto));
        let file = if std::mem::take(&mut *spare) {
            let renamed = self
                .faults
                .check(FaultPoint::LogRename)
                .and_then(|()| std::fs::rename(self.dir.join(SPARE), &path))
                .and_then(|()| File::open(&self.dir)?.sync_all());
            if let Err(e) = renamed {
                // Whether the name moved is unknown: no file may stay under the segment's
                // name (`read` would take it for a segment that follows), and the spare is
                // made again later.
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(self.dir.join(SPARE));
                return Err(e.into());
            }
            OpenOptions::new().write(true).open(&path)?
        } else {
            new_segment(&self.dir, upto, &self.faults)?
        };
        *segment = Segment { file, bytes: 0 };
        self.rotated.store(true, Ordering::SeqCst);
        Ok(())
    }
}
