//! The files a process has mapped (`/proc/PID/maps`), and opening each one as the process maps
//! it: the path in `maps` is not always that file for us. A library deleted or replaced since
//! it was loaded (an in-place upgrade) has no path any more, or a path to another file; a
//! process in a chroot or in a mount namespace of its own shows paths that exist only there.
//! The kernel keeps every mapped file reachable at `/proc/PID/map_files/START-END` (opening it
//! needs CAP_SYS_ADMIN, which root has outside containers), the executable at `/proc/PID/exe`,
//! and the process's root at `/proc/PID/root`. Whatever is opened is checked against the process's memory: the first
//! bytes of a mapping must be the file's bytes at the mapping's offset, or it is not the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::process::memory::Memory;

/// Longest `maps` text read (a process with a million mappings is not one we can help).
const MAX_MAPS: u64 = 64 << 20;
/// Bytes compared between a file and the memory it is mapped at.
const COMPARED: u64 = 4096;
const DELETED: &str = " (deleted)";

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// Offset in the file of the mapping's first byte.
    pub offset: u64,
    pub inode: u64,
    /// The file's path as `maps` shows it (relative to loopspy's root, so for a process in a
    /// chroot it includes the chroot's own path), without the ` (deleted)` mark; `None` for
    /// anonymous memory, `[heap]` and the like.
    pub path: Option<String>,
    /// The file was deleted (or replaced by another one under its name) since it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// The last component of the path.
    pub fn file_name(&self) -> Option<&str> {
        self.path.as_deref().and_then(|p| p.rsplit('/').next())
    }

    /// Is `other` a mapping of the same file (same inode and path)?
    pub fn same_file(&self, other: &Mapping) -> bool {
        self.inode == other.inode && self.inode != 0 && self.path == other.path
    }
}

/// The mappings of a process.
pub fn read(pid: i32) -> io::Result<Vec<Mapping>> {
    use std::io::Read;
    let mut text = String::new();
    File::open(format!("/proc/{pid}/maps"))?.take(MAX_MAPS).read_to_string(&mut text)?;
    Ok(parse(&text))
}

/// Parse `maps` text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    // Five fields, then the path, which may itself contain spaces.
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (f, r) = s.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let (range, perms, offset, _dev, inode) = (field()?, field()?, field()?, field()?, field()?);
    let (start, end) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    if end <= start {
        return None;
    }
    let perms = perms.as_bytes();
    let path = rest.trim_start_matches(' ');
    let (path, deleted) = match path.strip_suffix(DELETED) {
        Some(p) if p.starts_with('/') => (p, true),
        _ => (path, false),
    };
    Some(Mapping {
        start,
        end,
        readable: perms.first() == Some(&b'r'),
        writable: perms.get(1) == Some(&b'w'),
        executable: perms.get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path: path.starts_with('/').then(|| path.to_string()),
        deleted,
    })
}

/// How a mapped file was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/proc/PID/map_files/START-END`: the mapped file itself, wherever it is or was.
    MapFiles,
    /// `/proc/PID/exe`: the executable itself.
    Exe,
    /// `/proc/PID/root` and the path as the process sees it (a chroot's own path taken off).
    TargetRoot,
    /// The path as `maps` shows it, from `/proc/PID/root` or from our own root.
    Path,
}

/// Open the file mapped at `m` as the process maps it, or `None` when it cannot be reached
/// (deleted, and `/proc/PID/map_files` refused). `maps` are the process's mappings: a
/// read-only one of the same file is compared with the file (see [`is_mapped_file`]).
pub fn open<M: Memory>(pid: i32, m: &Mapping, maps: &[Mapping], mem: &M) -> Option<(File, Via)> {
    candidates(pid, m).into_iter().find_map(|(path, via)| {
        let file = File::open(&path).ok()?;
        is_mapped_file(&file, m, maps, mem).then_some((file, via))
    })
}

/// Where the file of `m` may be found, most faithful first.
fn candidates(pid: i32, m: &Mapping) -> Vec<(PathBuf, Via)> {
    let mut out = vec![(PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)), Via::MapFiles)];
    let Some(path) = m.path.as_deref() else { return out };
    // The executable is also at /proc/PID/exe (which anyone who may read the process opens).
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    if std::fs::read_link(&exe).is_ok_and(|e| e.to_str().map(|e| e.trim_end_matches(DELETED)) == Some(path)) {
        out.push((exe, Via::Exe));
    }
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    // `maps` names files from our root; the process's own root (`readlink /proc/PID/root`)
    // shows the same way, so a chroot's path is a prefix to take off.
    if let Ok(their_root) = std::fs::read_link(&root) {
        if let Ok(inside) = Path::new(path).strip_prefix(&their_root) {
            if their_root != Path::new("/") {
                out.push((root.join(inside), Via::TargetRoot));
            }
        }
    }
    if let Ok(relative) = Path::new(path).strip_prefix("/") {
        out.push((root.join(relative), Via::Path));
    }
    out.push((PathBuf::from(path), Via::Path));
    out
}

/// Does `file` hold the bytes mapped at `m`? The first page (at most) of a read-only mapping
/// of the same file (`m` itself, or another among `maps`) must equal the file's bytes at that
/// mapping's offset: for a library's first mapping, its ELF header, program headers and build
/// id, different in any other build. A writable mapping is not compared: the process may have
/// written to it (the dynamic linker does, to `.dynamic`).
pub fn is_mapped_file<M: Memory>(file: &File, m: &Mapping, maps: &[Mapping], mem: &M) -> bool {
    let read_only = |x: &&Mapping| x.readable && !x.writable;
    match std::iter::once(m).filter(read_only).chain(maps.iter().filter(|x| x.same_file(m)).filter(read_only)).next() {
        Some(probe) => same_bytes(file, probe, mem),
        None => false,
    }
}

fn same_bytes<M: Memory>(file: &File, m: &Mapping, mem: &M) -> bool {
    let len = COMPARED.min(m.end - m.start) as usize;
    let mut theirs = vec![0u8; len];
    let mut ours = vec![0u8; len];
    let Ok(got) = read_up_to(file, m.offset, &mut ours) else { return false };
    got > 0 && mem.read(m.start, &mut theirs[..got]).is_ok() && theirs[..got] == ours[..got]
}

fn read_up_to(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::{FakeMemory, ProcessMemory};

    #[test]
    fn maps_lines() {
        let text = "\
55d0-55e0 r--p 00000000 fe:00 73263                      /srv/root/usr/bin/python3.12
7f40-7f50 r-xp 00106000 fe:00 10051883                   /tmp/x/libpython3.12.so.1.0 (deleted)
7f60-7f70 rw-p 00000000 00:00 0 
7ffd-7ffe rw-p 00000000 00:00 0                          [stack]
7f80-7f90 r--p 00000000 fe:00 42                         /opt/my app/lib python.so
garbage
7fa0-7f90 r--p 00000000 fe:00 42                         /backwards
";
        let maps = parse(text);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].path.as_deref(), Some("/srv/root/usr/bin/python3.12"));
        assert!(maps[0].readable && !maps[0].executable && !maps[0].deleted);
        assert_eq!((maps[1].offset, maps[1].inode, maps[1].deleted), (0x106000, 10051883, true));
        assert_eq!(maps[1].path.as_deref(), Some("/tmp/x/libpython3.12.so.1.0"));
        assert_eq!(maps[1].file_name(), Some("libpython3.12.so.1.0"));
        assert!(maps[1].executable);
        assert_eq!((maps[2].path.as_deref(), maps[3].path.as_deref()), (None, None));
        assert_eq!(maps[4].path.as_deref(), Some("/opt/my app/lib python.so"));
    }

    #[test]
    fn a_file_is_the_mapped_one_only_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"\x7fELF first build").unwrap();
        std::fs::write(&b, b"\x7fELF other build").unwrap();
        let mut mem = FakeMemory::new();
        mem.map(0x1000, b"\x7fELF first build".to_vec());
        let m = Mapping {
            start: 0x1000,
            end: 0x2000,
            readable: true,
            writable: false,
            executable: false,
            offset: 0,
            inode: 1,
            path: Some("/x".into()),
            deleted: false,
        };
        // The mapping is a page long, the file shorter: the bytes the file has are compared.
        assert!(is_mapped_file(&File::open(&a).unwrap(), &m, &[], &mem));
        assert!(!is_mapped_file(&File::open(&b).unwrap(), &m, &[], &mem));
        assert!(!is_mapped_file(&File::open(&a).unwrap(), &Mapping { readable: false, ..m.clone() }, &[], &mem));
        // A writable mapping (written to, perhaps) is judged by a read-only one of the same file.
        let written = Mapping { start: 0x8000, end: 0x9000, writable: true, ..m.clone() };
        mem.map(0x8000, b"\x7fELF firXt build".to_vec());
        let other_file = Mapping { inode: 2, ..m.clone() };
        assert!(is_mapped_file(&File::open(&a).unwrap(), &written, &[written.clone(), m.clone()], &mem));
        assert!(!is_mapped_file(&File::open(&a).unwrap(), &written, &[written.clone(), other_file], &mem));
        std::fs::write(&b, b"").unwrap();
        assert!(!is_mapped_file(&File::open(&b).unwrap(), &m, &[], &mem), "an empty file is no mapped file");
    }

    #[test]
    fn our_own_libraries_open_as_mapped() {
        let me = std::process::id() as i32;
        let maps = read(me).unwrap();
        let libc = maps.iter().find(|m| m.offset == 0 && m.file_name().is_some_and(|n| n.starts_with("libc"))).expect("libc mapped");
        let (_, via) = open(me, libc, &maps, &ProcessMemory::new(me)).expect("libc opens");
        // With CAP_SYS_ADMIN (root outside a container) through map_files; else through the path.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(|h| u64::from_str_radix(h.trim(), 16).unwrap()).unwrap();
        let sys_admin = caps & (1 << 21) != 0;
        assert_eq!(via == Via::MapFiles, sys_admin, "{via:?}");
        let candidates = candidates(me, libc);
        assert!(candidates.iter().any(|(p, _)| p.as_os_str() == libc.path.as_deref().unwrap()));
    }
}
