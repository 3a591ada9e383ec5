//! Attaching to a target process: checks that say precisely why we cannot (no such PID,
//! permission, not Python, unsupported version, exited), then py-spy for the interpreter's
//! address and stacks, and our object reader for everything else.

use std::fs;
use std::io;

use py_spy::config::LockingStrategy;
use py_spy::{Config, PythonSpy};

use crate::base::error::Failure;
use crate::process::mapped;
use crate::process::memory::{Memory, ProcessMemory, ReadErrorKind};
use crate::process::procfs;
use crate::python::layout::{self, Layout, PyVersion};
use crate::python::locate::{self, NotFound};
use crate::python::published::{self, LayoutCheck};
use crate::python::reader::ObjectReader;

/// How to attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// Pause the target (ptrace) while reading. Off by default: loopspy never stops a
    /// production process unless asked.
    pub blocking: bool,
}

/// An attached Python process.
pub struct Target {
    pub pid: i32,
    /// py-spy's view of it, when py-spy could read the interpreter's files (it is `None` when
    /// [`locate`] found the interpreter instead: a libpython deleted or replaced since it was
    /// loaded, a chroot). Only tests and benchmarks use it, to compare stacks.
    pub spy: Option<PythonSpy>,
    /// The process, for pausing it (`--blocking`).
    pub process: remoteprocess::Process,
    pub version: PyVersion,
    /// The full version, e.g. `3.12.1`.
    pub version_text: String,
    pub layout: &'static Layout,
    /// Where the layout came from and what the interpreter's own debug offsets said of it.
    pub layout_check: LayoutCheck,
    /// Address of the main `PyInterpreterState`.
    pub interp: u64,
    pub reader: ObjectReader<ProcessMemory>,
    pub options: AttachOptions,
    /// The 16 random bytes the kernel gave the program at its `exec()`: other bytes at that
    /// place (or none) mean the process has exec'd since attach.
    pub image: Option<(u64, [u8; 16])>,
    /// Tries left at finding the interpreter's `.AsyncioDebug` section later (see
    /// [`Target::resolve_asyncio_late`]); 0 once found or not to be had.
    asyncio_tries: u8,
}

impl Target {
    /// Attach to `pid`, or say exactly why not.
    pub fn attach(pid: i32, options: AttachOptions) -> Result<Target, Failure> {
        preflight(pid)?;
        if options.blocking && procfs::state(pid).ok() == Some('T') {
            // Pausing a stopped process would wait for it to run again, forever.
            return Err(Failure::TargetStopped { pid });
        }
        let config = Config {
            blocking: if options.blocking { LockingStrategy::Lock } else { LockingStrategy::NonBlocking },
            collect_thread_names: false,
            ..Config::default()
        };
        let memory = ProcessMemory::new(pid);
        let maps = mapped::read(pid).unwrap_or_default();
        let (spy, version, version_text, interp) = if locate::pyspy_sees_files(pid, &maps, &memory) {
            match new_spy(pid, &config) {
                Ok(spy) => {
                    let version = PyVersion::new(spy.version.major as u8, spy.version.minor as u8);
                    let version_text = format!("{}.{}.{}", spy.version.major, spy.version.minor, spy.version.patch);
                    let interp = spy.addresses.interpreter_address as u64;
                    (Some(spy), version, version_text, interp)
                }
                // What py-spy did not recognise, our own search may (it reads `sys.version`
                // through what it finds, so it does not take a stranger for Python).
                Err(failure @ Failure::NotPython { .. }) => match find_interpreter(pid, &memory, 1) {
                    Ok(found) => (None, found.version, found.version_text, found.interp),
                    Err(_) => return Err(failure),
                },
                Err(failure) => return Err(failure),
            }
        } else {
            let found = find_interpreter(pid, &memory, ATTACH_ATTEMPTS)?;
            (None, found.version, found.version_text, found.interp)
        };
        let layout = layout::for_version(version).ok_or_else(|| Failure::UnsupportedPython {
            pid,
            version: version_text.clone(),
            detail: "no layout table for this version".into(),
            supported: layout::supported_range(),
        })?;
        let (layout, layout_check) = published::resolve(pid, &memory, layout);
        // 3.8–3.11 record with a running loop the PID that set it, as the process sees itself.
        let reader = ObjectReader::new(memory, layout).with_own_pid(procfs::ns_pid(pid));
        let image = exec_fingerprint(&reader.memory().clone(), pid);
        let asyncio_tries = if lacks_asyncio_section(version, &layout_check) { LATE_ASYNCIO_TRIES } else { 0 };
        let process = remoteprocess::Process::new(pid).map_err(|e| Failure::Unreadable { pid, detail: e.to_string() })?;
        Ok(Target { pid, spy, process, version, version_text, layout, layout_check, interp, reader, options, image, asyncio_tries })
    }

    /// 3.14+ publishes the asyncio offsets in `_asyncio`, which the program loads when it
    /// imports asyncio: after an attach to a program loopspy started, before that. Once a
    /// loop runs, the section is looked for again (as CPython's own tools do), a few times
    /// at most. Returns whether the layout in use changed (what was read with the old one
    /// should be read again).
    pub fn resolve_asyncio_late(&mut self) -> bool {
        if self.asyncio_tries == 0 {
            return false;
        }
        self.asyncio_tries -= 1;
        let Some(base) = layout::for_version(self.version) else { return false };
        let (layout, check) = published::resolve(self.pid, self.reader.memory(), base);
        if lacks_asyncio_section(self.version, &check) {
            return false;
        }
        self.asyncio_tries = 0;
        let changed = !std::ptr::eq(layout, self.layout) && *layout != *self.layout;
        self.layout = layout;
        self.layout_check = check;
        if changed {
            self.reader = ObjectReader::new(*self.reader.memory(), layout).with_own_pid(self.reader.own_pid());
        }
        changed
    }

    /// Has the process replaced its program (`exec()`) since attach? Every exec puts new
    /// random bytes (`AT_RANDOM`) on the new stack, ASLR or not, the same binary or not.
    /// Only a fingerprint read and found different says yes (or an `auxv` we may no longer
    /// read, from a live process: a set-uid program took its place); one that cannot be read
    /// says no, because a process that is exiting has already dropped its memory.
    pub fn exec_happened(&self) -> bool {
        let Some((at_before, bytes_before)) = self.image else { return false };
        match procfs::at_random(self.pid) {
            Ok(Some(at)) if at != at_before => true,
            Ok(Some(at)) => {
                let mut bytes = [0u8; 16];
                self.reader.memory().read(at, &mut bytes).is_ok() && bytes != bytes_before
            }
            Ok(None) => false,
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied && !procfs::is_dead(self.pid) && !procfs::exiting(self.pid),
        }
    }

    /// Turn a read failure into the failure the user should see: the process died, we lost
    /// permission, or the data did not hold still.
    pub fn explain(&self, err: &crate::python::reader::Error) -> Failure {
        if err.is_gone() || procfs::is_dead(self.pid) {
            Failure::TargetExited { pid: self.pid }
        } else if err.is_denied() {
            Failure::PermissionDenied { pid: self.pid, detail: err.to_string(), access: Some(procfs::access(self.pid)) }
        } else {
            Failure::Unreadable { pid: self.pid, detail: err.to_string() }
        }
    }
}

/// Attempts at finding `.AsyncioDebug` after attach ([`Target::resolve_asyncio_late`]).
const LATE_ASYNCIO_TRIES: u8 = 3;

/// A version that publishes `.AsyncioDebug`, resolved without it.
fn lacks_asyncio_section(version: PyVersion, check: &LayoutCheck) -> bool {
    layout::debug_offsets::has_asyncio_section(version)
        && check.source.starts_with("_Py_DebugOffsets")
        && !check.source.contains("AsyncioDebug")
}

/// `AT_RANDOM`'s address and its 16 bytes.
fn exec_fingerprint(mem: &ProcessMemory, pid: i32) -> Option<(u64, [u8; 16])> {
    let at = procfs::at_random(pid).ok()??;
    let mut bytes = [0u8; 16];
    mem.read(at, &mut bytes).ok()?;
    Some((at, bytes))
}

/// Checks in the order a user needs the answer: does it exist, is it alive, may we read it.
fn preflight(pid: i32) -> Result<(), Failure> {
    if !procfs::exists(pid) {
        return Err(Failure::NoSuchProcess { pid });
    }
    if procfs::is_dead(pid) {
        return Err(Failure::TargetExited { pid });
    }
    let maps = match fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(Failure::PermissionDenied { pid, detail: format!("/proc/{pid}/maps: {e}"), access: Some(procfs::access(pid)) })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Failure::TargetExited { pid }),
        Err(e) => {
            return Err(Failure::PermissionDenied { pid, detail: format!("/proc/{pid}/maps: {e}"), access: Some(procfs::access(pid)) })
        }
    };
    if maps.trim().is_empty() {
        // Kernel threads and exiting processes have no memory map.
        return if procfs::is_dead(pid) {
            Err(Failure::TargetExited { pid })
        } else {
            Err(Failure::NotPython { pid, exe: None, detail: "it has no user-space memory".into() })
        };
    }
    if let Some(build) = free_threaded_build(&maps, procfs::exe(pid).ok().as_deref()) {
        return Err(Failure::UnsupportedPython {
            pid,
            version: build,
            detail: "free-threaded (no-GIL) builds have a different object layout, not supported yet".into(),
            supported: layout::supported_range(),
        });
    }
    // Try one real read: yama's ptrace_scope and missing CAP_SYS_PTRACE show up only here.
    if let Some(addr) = first_readable_address(&maps) {
        let mut byte = [0u8; 1];
        if let Err(e) = ProcessMemory::new(pid).read(addr, &mut byte) {
            match e.kind {
                ReadErrorKind::Denied => {
                    return Err(Failure::PermissionDenied {
                        pid,
                        detail: "process_vm_readv: operation not permitted".into(),
                        access: Some(procfs::access(pid)),
                    })
                }
                ReadErrorKind::Gone => return Err(Failure::TargetExited { pid }),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `3.13t` when the process runs a free-threaded interpreter (`python3.13t`, or
/// `libpython3.13t.so` mapped).
fn free_threaded_build(maps: &str, exe: Option<&std::path::Path>) -> Option<String> {
    let from_name = |name: &str| -> Option<String> {
        let rest = name.strip_prefix("libpython").or_else(|| name.strip_prefix("python"))?;
        let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let after = &rest[version.len()..];
        (version.contains('.') && after.starts_with('t') && (after.len() == 1 || after[1..].starts_with(".so")))
            .then(|| format!("{version}t"))
    };
    exe.and_then(|e| e.file_name()?.to_str().and_then(from_name))
        .or_else(|| maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter_map(|path| path.rsplit('/').next()).find_map(from_name))
}

fn first_readable_address(maps: &str) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let perms = parts.next()?;
        if !perms.starts_with('r') {
            return None;
        }
        u64::from_str_radix(range.split('-').next()?, 16).ok()
    })
}

/// Our own search for the interpreter ([`locate`]), when py-spy cannot read its files: up to
/// `attempts` for a process that looks like Python (it may still be starting).
fn find_interpreter(pid: i32, memory: &ProcessMemory, attempts: u32) -> Result<locate::Located, Failure> {
    let mut attempt = 1;
    loop {
        let maps = mapped::read(pid).unwrap_or_default();
        let exe = procfs::exe(pid).ok().and_then(|p| p.to_str().map(|p| p.trim_end_matches(" (deleted)").to_string()));
        let why = match locate::locate(pid, &maps, exe.as_deref(), memory) {
            Ok(found) => return Ok(found),
            Err(_) if procfs::is_dead(pid) => return Err(Failure::TargetExited { pid }),
            Err(NotFound::Unsupported(version)) => {
                return Err(Failure::UnsupportedPython {
                    pid,
                    version,
                    detail: "no layout table for this version".into(),
                    supported: layout::supported_range(),
                })
            }
            Err(NotFound::Other(why)) => why,
        };
        let looks =
            looks_like_python(&fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(), procfs::exe(pid).ok().as_deref());
        if attempt >= attempts || !looks {
            return Err(Failure::NotPython { pid, exe: procfs::exe(pid).ok().map(|p| p.display().to_string()), detail: why });
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Attempts at py-spy's attach when a Python process is not recognised.
const ATTACH_ATTEMPTS: u32 = 10;

/// py-spy's attach. It validates the interpreter it finds by reading the threads' state, and
/// on a busy target (3.15 most often) that read can be torn, after which it reports "not a
/// Python interpreter". A process that looks like Python (its executable or a mapped
/// libpython) is given more attempts before that answer is believed.
fn new_spy(pid: i32, config: &Config) -> Result<PythonSpy, Failure> {
    let mut attempt = 1;
    loop {
        let failure = match contained(|| PythonSpy::new(pid, config)) {
            Ok(spy) => return Ok(spy),
            Err(e) => classify_spy_error(pid, &e),
        };
        let retry = matches!(failure, Failure::NotPython { .. })
            && attempt < ATTACH_ATTEMPTS
            && looks_like_python(&fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(), procfs::exe(pid).ok().as_deref());
        if !retry {
            return Err(failure);
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

thread_local! {
    /// Set while py-spy code runs on this thread (see [`contained`]).
    static IN_PYSPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs py-spy code that reads the target, turning a panic in it into an error. py-spy
/// trusts some of what it reads (an overflowing add on a torn thread state, an `unwrap` on a
/// frame pointer); a busy target's torn read must cost a retry, not loopspy. Its panic
/// message is not printed (the error carries it).
pub(crate) fn contained<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PYSPY.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    let was = IN_PYSPY.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_PYSPY.with(|c| c.set(was));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(anyhow::anyhow!("py-spy failed reading the target: {what}"))
    })
}

/// Does the process look like a Python interpreter: an executable called `python…`, or a
/// libpython mapped?
fn looks_like_python(maps: &str, exe: Option<&std::path::Path>) -> bool {
    let exe_is_python = exe.and_then(|p| p.file_name()).is_some_and(|n| n.to_string_lossy().starts_with("python"));
    exe_is_python || maps.lines().any(|l| l.rsplit('/').next().is_some_and(|f| f.starts_with("libpython")))
}

/// What a failed py-spy attach means, decided by our own checks (never by its message): the
/// process is gone, we may not read it, it is a Python loopspy does not support, or it is not
/// a Python at all.
fn classify_spy_error(pid: i32, err: &anyhow::Error) -> Failure {
    if procfs::is_dead(pid) {
        return Failure::TargetExited { pid };
    }
    let permission = err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied));
    if permission {
        return Failure::PermissionDenied { pid, detail: "reading its memory".into(), access: Some(procfs::access(pid)) };
    }
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let exe_path = procfs::exe(pid).ok();
    let exe = exe_path.as_ref().map(|p| p.display().to_string());
    match python_version_in(&maps, exe_path.as_deref()) {
        Some(v) if layout::for_version(v).is_none() => Failure::UnsupportedPython {
            pid,
            version: v.to_string(),
            detail: "no layout table for this version".into(),
            supported: layout::supported_range(),
        },
        Some(v) => Failure::NotPython {
            pid,
            exe,
            detail: format!(
                "it runs Python {v}, but its interpreter state could not be found (a build loopspy cannot read, or one still \
                 starting: try again in a moment)"
            ),
        },
        None => Failure::NotPython { pid, exe, detail: "no Python interpreter in its executable or its libraries".into() },
    }
}

/// The `major.minor` a process's executable (`python3.12`) or mapped library
/// (`libpython3.12.so.1.0`) names, if any.
fn python_version_in(maps: &str, exe: Option<&std::path::Path>) -> Option<PyVersion> {
    let from_name = |name: &str| -> Option<PyVersion> {
        let rest = name.strip_prefix("libpython").or_else(|| name.strip_prefix("python"))?;
        let mut parts = rest.split('.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: String = parts.next()?.chars().take_while(|c| c.is_ascii_digit()).collect();
        Some(PyVersion::new(major, minor.parse().ok()?))
    };
    exe.and_then(|e| from_name(e.file_name()?.to_str()?))
        .or_else(|| maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter_map(|p| p.rsplit('/').next()).find_map(from_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_versions_from_names() {
        let lib = "7f00-7f10 r-xp 0 0:0 0 /usr/lib/x86_64-linux-gnu/libpython3.16.so.1.0\n";
        assert_eq!(python_version_in(lib, Some(std::path::Path::new("/usr/bin/uwsgi"))), Some(PyVersion::new(3, 16)));
        assert_eq!(python_version_in("", Some(std::path::Path::new("/x/bin/python3.7"))), Some(PyVersion::new(3, 7)));
        assert_eq!(python_version_in("", Some(std::path::Path::new("/usr/bin/python3"))), None);
        assert_eq!(python_version_in("", Some(std::path::Path::new("/usr/bin/bash"))), None);
    }

    #[test]
    fn free_threaded_builds_are_recognised() {
        let ft = "7f00-7f10 r-xp 0 0:0 0 /usr/lib/libpython3.13t.so.1.0\n";
        assert_eq!(free_threaded_build(ft, None), Some("3.13t".into()));
        let gil = "7f00-7f10 r-xp 0 0:0 0 /usr/lib/libpython3.13.so.1.0\n";
        assert_eq!(free_threaded_build(gil, None), None);
        assert_eq!(free_threaded_build("", Some(std::path::Path::new("/usr/bin/python3.14t"))), Some("3.14t".into()));
        assert_eq!(free_threaded_build("", Some(std::path::Path::new("/usr/bin/python3.14"))), None);
        assert_eq!(free_threaded_build("", Some(std::path::Path::new("/usr/bin/pythonista"))), None);
    }

    #[test]
    fn a_panic_in_pyspy_code_is_an_error() {
        let r: anyhow::Result<()> = contained(|| {
            let v: Vec<u8> = Vec::new();
            let _ = v[3];
            Ok(())
        });
        assert!(r.unwrap_err().to_string().contains("index out of bounds"));
        assert_eq!(contained(|| Ok(7)).unwrap(), 7);
        // Outside `contained`, panics are reported as before (the hook only stays quiet inside).
        assert!(!IN_PYSPY.with(|c| c.get()));
    }

    #[test]
    fn python_looking_processes() {
        let lib = "7f00-7f10 r-xp 0 0:0 0 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0\n";
        assert!(looks_like_python(lib, Some(std::path::Path::new("/usr/bin/uwsgi"))));
        assert!(looks_like_python("", Some(std::path::Path::new("/root/.pyenv/versions/3.12.7/bin/python3.12"))));
        assert!(!looks_like_python("7f00-7f10 r-xp 0 0:0 0 /usr/bin/bash\n", Some(std::path::Path::new("/usr/bin/bash"))));
        assert!(!looks_like_python("", None));
    }

    #[test]
    fn first_readable_mapping_is_found() {
        let maps = "5555-6666 ---p 0 0:0 0\n7000-8000 r-xp 0 0:0 0 /usr/bin/python3\n";
        assert_eq!(first_readable_address(maps), Some(0x7000));
        assert_eq!(first_readable_address(""), None);
    }

    #[test]
    fn preflight_names_missing_and_dead_processes() {
        assert_eq!(preflight(i32::MAX), Err(Failure::NoSuchProcess { pid: i32::MAX }));
        // A zombie: a child that exited and that we have not reaped yet.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        for _ in 0..200 {
            if matches!(procfs::state(pid), Ok('Z')) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(preflight(pid), Err(Failure::TargetExited { pid }));
        drop(child);
    }
}
