//! Reading bytes from another address space.
//!
//! Everything above this module sees memory only through the [`Memory`] trait, so the object
//! reader can be tested on byte buffers built in the test ([`FakeMemory`]) exactly as it runs
//! against a live process ([`ProcessMemory`]).
//!
//! A read is all or nothing: a short read (the range crosses into an unmapped page, or the
//! target unmapped it while we read) is an error, never a half-filled buffer.

use std::fmt;

/// Why a read failed. The kinds matter to the caller: a fault is usually a stale or garbage
/// pointer (drop the value, maybe retry), `Gone` means the target exited, `Denied` means we
/// lack ptrace access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// The address range is not mapped in the target (EFAULT or a short read).
    Fault,
    /// The process no longer exists (ESRCH).
    Gone,
    /// We may not read this process (EPERM / EACCES).
    Denied,
    /// Anything else the kernel said.
    Other(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError {
    pub addr: u64,
    pub len: usize,
    pub kind: ReadErrorKind,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ReadErrorKind::Fault => "address not mapped".to_string(),
            ReadErrorKind::Gone => "process has exited".to_string(),
            ReadErrorKind::Denied => "permission denied".to_string(),
            ReadErrorKind::Other(errno) => format!("os error {errno}"),
        };
        write!(f, "reading {} bytes at {:#x}: {}", self.len, self.addr, what)
    }
}

impl std::error::Error for ReadError {}

/// A source of bytes at virtual addresses.
pub trait Memory {
    /// Fill `buf` with the bytes at `addr..addr+buf.len()`, or fail without partial data.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// Read many small ranges of `size` bytes each, as cheaply as the source allows (one
    /// system call per ~1000 ranges for a live process). Each range succeeds or fails on its
    /// own; the result has one entry per address, `None` for a failed range.
    fn read_batch(&self, addrs: &[u64], size: usize) -> Vec<Option<Vec<u8>>> {
        addrs
            .iter()
            .map(|a| {
                let mut buf = vec![0u8; size];
                self.read(*a, &mut buf).ok().map(|_| buf)
            })
            .collect()
    }

    /// Read ranges of any sizes, in order, into consecutive parts of `buf` (whose length is at
    /// least the sum of the ranges' lengths), without allocating. Returns how many leading
    /// bytes of `buf` were filled: a range lying wholly inside that prefix was read, the
    /// others were not. Reading stops at the first range that cannot be read, as
    /// `process_vm_readv` does. An error only when not even the first range could be read.
    fn read_many(&self, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut at = 0;
        for (i, &(addr, len)) in ranges.iter().enumerate() {
            match self.read(addr, &mut buf[at..at + len]) {
                Ok(()) => at += len,
                Err(e) if i == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(at)
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(addr, buf)
    }

    fn read_batch(&self, addrs: &[u64], size: usize) -> Vec<Option<Vec<u8>>> {
        (**self).read_batch(addrs, size)
    }

    fn read_many(&self, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<usize, ReadError> {
        (**self).read_many(ranges, buf)
    }
}

/// The memory of a live process, read with `process_vm_readv(2)`.
///
/// We call the syscall directly instead of going through `remoteprocess`'s `ProcessMemory`
/// because that path (read-process-memory 0.3) treats a short read as success, which would hand
/// us a buffer whose tail is stale; the object reader must see torn reads as errors.
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: libc::pid_t,
}

impl ProcessMemory {
    pub fn new(pid: i32) -> Self {
        ProcessMemory { pid }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Memory for ProcessMemory {
    fn read_batch(&self, addrs: &[u64], size: usize) -> Vec<Option<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; addrs.len()];
        if size == 0 {
            return addrs.iter().map(|_| Some(Vec::new())).collect();
        }
        let mut at = 0;
        while at < addrs.len() {
            let end = (at + IOV_MAX).min(addrs.len());
            at += self.batch_once(&addrs[at..end], size, &mut out[at..end]);
        }
        out
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let len = buf.len();
        let err = |kind| ReadError { addr, len, kind };
        if buf.is_empty() {
            return Ok(());
        }
        if addr == 0 || addr.checked_add(buf.len() as u64).is_none() {
            return Err(err(ReadErrorKind::Fault));
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: `local` describes exactly `buf`, which we own mutably for the call; the
        // kernel only writes into it and validates `remote` itself.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(err(classify_errno(errno)));
        }
        if n as usize != len {
            return Err(err(ReadErrorKind::Fault));
        }
        Ok(())
    }

    /// Up to [`MANY_PER_CALL`] ranges per `process_vm_readv`: one system call (one permission
    /// check, one lookup of the target's memory map) instead of one per range.
    fn read_many(&self, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<usize, ReadError> {
        let total: usize = ranges.iter().map(|r| r.1).sum();
        assert!(buf.len() >= total, "read_many: buffer shorter than the ranges");
        let mut done = 0usize;
        for (c, chunk) in ranges.chunks(MANY_PER_CALL).enumerate() {
            let mut remote = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MANY_PER_CALL];
            let mut n_remote = 0;
            let mut want = 0usize;
            let mut stopped = false;
            for &(addr, len) in chunk {
                if len == 0 {
                    continue;
                }
                if addr == 0 || addr.checked_add(len as u64).is_none() {
                    // Unreadable: stop before it, as the kernel stops at a bad range.
                    stopped = true;
                    break;
                }
                remote[n_remote] = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
                n_remote += 1;
                want += len;
            }
            if n_remote > 0 {
                let local = libc::iovec { iov_base: buf[done..].as_mut_ptr().cast(), iov_len: want };
                // SAFETY: `local` lies inside `buf` (`done + want <= total <= buf.len()`), which
                // we own mutably for the call; the kernel validates the remote ranges itself.
                let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, remote.as_ptr(), n_remote as libc::c_ulong, 0) };
                if n < 0 {
                    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                    if c == 0 {
                        let (addr, len) = ranges[0];
                        return Err(ReadError { addr, len, kind: classify_errno(errno) });
                    }
                    break;
                }
                done += n as usize;
                if n as usize != want {
                    break;
                }
            } else if c == 0 && stopped {
                let (addr, len) = ranges[0];
                return Err(ReadError { addr, len, kind: ReadErrorKind::Fault });
            }
            if stopped {
                break;
            }
        }
        Ok(done)
    }
}

/// Ranges per `process_vm_readv` call in [`Memory::read_many`] (kept on the stack).
const MANY_PER_CALL: usize = 64;

/// Ranges per `process_vm_readv` call (the kernel's `IOV_MAX`).
const IOV_MAX: usize = 1024;

impl ProcessMemory {
    /// One `process_vm_readv` over `addrs[..]` (at most `IOV_MAX`), into `out`. The kernel
    /// stops at the first range it cannot read: the ranges before it are good; that one is
    /// failed; the rest are tried again in the next call.
    fn batch_once(&self, addrs: &[u64], size: usize, out: &mut [Option<Vec<u8>>]) -> usize {
        let mut bufs: Vec<Vec<u8>> = addrs.iter().map(|_| vec![0u8; size]).collect();
        let local: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: size }).collect();
        let remote: Vec<libc::iovec> = addrs.iter().map(|a| libc::iovec { iov_base: *a as *mut libc::c_void, iov_len: size }).collect();
        // SAFETY: every local iovec describes a live buffer of `size` bytes owned by `bufs`,
        // which outlives the call; the kernel validates the remote ones.
        let n = unsafe { libc::process_vm_readv(self.pid, local.as_ptr(), local.len() as _, remote.as_ptr(), remote.len() as _, 0) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return addrs.len(); // the process is gone: nothing more will read
        }
        let full = if n <= 0 { 0 } else { n as usize / size };
        for (i, buf) in bufs.into_iter().enumerate().take(full) {
            out[i] = Some(buf);
        }
        // The range at `full` failed (or the call did): skip it.
        (full + 1).min(addrs.len())
    }
}

fn classify_errno(errno: i32) -> ReadErrorKind {
    match errno {
        libc::EFAULT | libc::EIO => ReadErrorKind::Fault,
        libc::ESRCH => ReadErrorKind::Gone,
        libc::EPERM | libc::EACCES => ReadErrorKind::Denied,
        other => ReadErrorKind::Other(other),
    }
}

/// Memory made of byte regions placed at chosen addresses: for tests, fuzzing and replay.
#[derive(Debug, Default, Clone)]
pub struct FakeMemory {
    regions: Vec<(u64, Vec<u8>)>,
}

impl FakeMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `bytes` at `addr`. Later regions win where they overlap earlier ones.
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) -> &mut Self {
        self.regions.push((addr, bytes));
        self
    }

    /// Overwrite bytes inside an already mapped region; false when no region holds them all.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        for (base, region) in self.regions.iter_mut().rev() {
            let end = *base + region.len() as u64;
            if addr >= *base && addr + bytes.len() as u64 <= end {
                let start = (addr - *base) as usize;
                region[start..start + bytes.len()].copy_from_slice(bytes);
                return true;
            }
        }
        false
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let end = addr.checked_add(buf.len() as u64);
        for (base, bytes) in self.regions.iter().rev() {
            let region_end = base + bytes.len() as u64;
            if let Some(end) = end {
                if addr >= *base && end <= region_end {
                    let start = (addr - base) as usize;
                    buf.copy_from_slice(&bytes[start..start + buf.len()]);
                    return Ok(());
                }
            }
        }
        Err(ReadError { addr, len: buf.len(), kind: ReadErrorKind::Fault })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_memory_reads_inside_a_region_and_faults_across_its_end() {
        let mut mem = FakeMemory::new();
        mem.map(0x1000, (0u8..16).collect());
        let mut buf = [0u8; 4];
        mem.read(0x1004, &mut buf).unwrap();
        assert_eq!(buf, [4, 5, 6, 7]);
        let err = mem.read(0x100e, &mut buf).unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::Fault);
        assert!(mem.read(u64::MAX - 1, &mut buf).is_err());
    }

    #[test]
    fn own_process_memory_round_trips_and_rejects_unmapped_addresses() {
        let value: [u8; 8] = *b"loopspy!";
        let mem = ProcessMemory::new(std::process::id() as i32);
        let mut buf = [0u8; 8];
        mem.read(value.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(&buf, b"loopspy!");
        let err = mem.read(8, &mut buf).unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::Fault);
    }

    #[test]
    fn batches_read_many_ranges_and_isolate_bad_ones() {
        let values: Vec<u64> = (0..3000u64).map(|i| i * 7 + 1).collect();
        let mem = ProcessMemory::new(std::process::id() as i32);
        let mut addrs: Vec<u64> = values.iter().map(|v| v as *const u64 as u64).collect();
        addrs[5] = 8; // unmapped
        addrs[2500] = 16; // unmapped, in a later batch
        let got = mem.read_batch(&addrs, 8);
        assert_eq!(got.len(), addrs.len());
        for (i, g) in got.iter().enumerate() {
            match i {
                5 | 2500 => assert!(g.is_none(), "{i}"),
                _ => assert_eq!(u64::from_le_bytes(g.clone().unwrap().try_into().unwrap()), values[i], "{i}"),
            }
        }
        // The default (one read each) agrees.
        let fake = {
            let mut f = FakeMemory::new();
            f.map(0x1000, (0u8..64).collect());
            f
        };
        let got = fake.read_batch(&[0x1000, 0x2000, 0x1008], 4);
        assert_eq!(got, vec![Some(vec![0, 1, 2, 3]), None, Some(vec![8, 9, 10, 11])]);
    }

    #[test]
    fn read_many_fills_consecutive_parts_and_stops_at_the_first_bad_range() {
        let a: [u8; 8] = *b"abcdefgh";
        let b: [u8; 4] = *b"wxyz";
        let many: Vec<u8> = (0..=255u8).cycle().take(100 * 16).collect();
        let (pa, pb) = (a.as_ptr() as u64, b.as_ptr() as u64);
        let fake = {
            let mut m = FakeMemory::new();
            m.map(pa, a.to_vec()).map(pb, b.to_vec()).map(many.as_ptr() as u64, many.clone());
            m
        };
        let live = ProcessMemory::new(std::process::id() as i32);
        let mems: [&dyn Memory; 2] = [&fake, &live];
        for mem in mems {
            let mut buf = [0u8; 16];
            let n = mem.read_many(&[(pa + 2, 4), (pb, 4), (pa, 8)], &mut buf).unwrap();
            assert_eq!(n, 16);
            assert_eq!(&buf, b"cdefwxyzabcdefgh");
            // An unreadable range: the ones before it are read, none after.
            let mut buf = [0u8; 16];
            let n = mem.read_many(&[(pa, 4), (8, 4), (pb, 4)], &mut buf).unwrap();
            assert_eq!(n, 4);
            assert_eq!(&buf[..4], b"abcd");
            assert!(mem.read_many(&[(8, 4), (pa, 4)], &mut buf).is_err());
            // More ranges than one system call carries.
            let ranges: Vec<(u64, usize)> = (0..100).map(|i| (many.as_ptr() as u64 + 16 * (99 - i), 16)).collect();
            let mut buf = vec![0u8; 1600];
            assert_eq!(mem.read_many(&ranges, &mut buf).unwrap(), 1600);
            for i in 0..100 {
                assert_eq!(&buf[16 * i..16 * i + 16], &many[16 * (99 - i)..16 * (99 - i) + 16]);
            }
        }
    }

    #[test]
    fn a_vanished_process_reads_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let mem = ProcessMemory::new(pid);
        let mut buf = [0u8; 8];
        let err = mem.read(0x1000, &mut buf).unwrap_err();
        assert_eq!(err.kind, ReadErrorKind::Gone);
    }
}
