//! Finding the interpreter in a process when py-spy cannot: py-spy reads the executable
//! through `/proc/PID/exe` (always the mapped file) but a shared libpython through
//! `/proc/PID/root` and the path in `/proc/PID/maps`, which is not the mapped file when the
//! library was deleted or replaced since (an in-place upgrade), or when the process runs in a
//! chroot (the path then includes the chroot's own). Here the interpreter is found the way
//! CPython's own remote debugging finds it: `_PyRuntime` (an exported symbol, looked up in the
//! process's memory, else in the file opened as the process maps it: `process::mapped`),
//! `interpreters.head` in it, checked by reading the interpreter's own `sys.version` through it.

use crate::process::elf::{self, ElfFile};
use crate::process::mapped::{self, Mapping};
use crate::process::memory::Memory;
use crate::python::layout::{self, PyVersion};
use crate::python::reader::{plausible_pointer, ObjectReader};
use crate::python::{interp, published};

/// An interpreter found in a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub version: PyVersion,
    /// `major.minor.patch`, from the interpreter's `sys.version`.
    pub version_text: String,
    /// Address of the `PyInterpreterState` that `_PyRuntime.interpreters.head` names.
    pub interp: u64,
}

/// Why no interpreter was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFound {
    /// It runs a Python loopspy has no layout for (the version as `3.X`).
    Unsupported(String),
    /// Anything else, in words.
    Other(String),
}

/// Would py-spy read the interpreter's files as the process maps them? True without a shared
/// libpython (the executable is read through `/proc/PID/exe`), or when `/proc/PID/root` and
/// the path of the libpython mapping lead to the very file mapped.
pub fn pyspy_sees_files<M: Memory>(pid: i32, maps: &[Mapping], mem: &M) -> bool {
    let Some(lib) = maps.iter().find(|m| m.offset == 0 && m.file_name().is_some_and(is_libpython)) else { return true };
    if lib.deleted {
        return false;
    }
    // py-spy's own path for it, byte for byte.
    let Some(path) = lib.path.as_deref() else { return false };
    std::fs::File::open(format!("/proc/{pid}/root{path}")).is_ok_and(|f| mapped::is_mapped_file(&f, lib, maps, mem))
}

/// `libpython3.12.so.1.0`, `libpython3.13d.so` (not `libpython3.so`, the stable-ABI shim).
fn is_libpython(name: &str) -> bool {
    name.strip_prefix("libpython").and_then(version_in_name).is_some()
}

/// `3.12` at the start of `rest` (`3.12.so.1.0`, `3.12`, `3.13d.so`).
fn version_in_name(rest: &str) -> Option<PyVersion> {
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some(PyVersion::new(major.parse().ok()?, minor.parse().ok()?))
}

/// The version a file name says (`libpython3.12.so.1.0`, `python3.9`).
fn version_of_file(name: &str) -> Option<PyVersion> {
    name.strip_prefix("libpython").or_else(|| name.strip_prefix("python")).and_then(version_in_name)
}

/// Find the interpreter of process `pid` from the files it maps (`maps`; `exe`: the path of its
/// executable as `/proc/PID/exe` names it).
pub fn locate<M: Memory>(pid: i32, maps: &[Mapping], exe: Option<&str>, mem: &M) -> Result<Located, NotFound> {
    // The libpython first (its executable is then a thin `main`), then the executable itself.
    let mut files: Vec<&Mapping> = Vec::new();
    let wanted = maps.iter().filter(|m| m.offset == 0);
    for m in wanted.clone().filter(|m| m.file_name().is_some_and(is_libpython)).chain(wanted.filter(|m| m.path.as_deref() == exe)) {
        if !files.iter().any(|f| f.same_file(m)) {
            files.push(m);
        }
    }
    let mut why = String::from("no mapped file exports _PyRuntime");
    for m in files {
        let Some((runtime, py_version)) = symbols(pid, m, maps, mem, &mut why) else { continue };
        let packed = py_version.and_then(|at| read_u32(mem, at));
        let named = m.file_name().and_then(version_of_file);
        return interpreter_at(pid, mem, runtime, packed, named);
    }
    Err(NotFound::Other(why))
}

/// The runtime addresses of `_PyRuntime` and `Py_Version` in the object mapped at `m`: from
/// the process's memory (its dynamic symbols are mapped), else from its file opened as the
/// process maps it. `why` says what failed last.
fn symbols<M: Memory>(pid: i32, m: &Mapping, maps: &[Mapping], mem: &M, why: &mut String) -> Option<(u64, Option<u64>)> {
    if let Some(runtime) = elf::exported_in_memory(mem, m.start, "_PyRuntime") {
        return Some((runtime, elf::exported_in_memory(mem, m.start, "Py_Version")));
    }
    let Some((file, _)) = mapped::open(pid, m, maps, mem) else {
        *why = format!(
            "{} is no longer the file it loaded{}, its symbols could not be read from memory, and \
             /proc/{pid}/map_files, where the kernel keeps that file, needs CAP_SYS_ADMIN: run loopspy as root",
            m.path.as_deref().unwrap_or("?"),
            if m.deleted { " (deleted since)" } else { "" }
        );
        return None;
    };
    let elf = ElfFile::from_file(file).ok()?;
    let (runtime, first) = (elf.dynamic_symbol("_PyRuntime").ok()??, elf.first_load_vaddr().ok()?);
    let bias = m.start.wrapping_sub(first);
    Some((bias.wrapping_add(runtime), elf.dynamic_symbol("Py_Version").ok().flatten().map(|at| bias.wrapping_add(at))))
}

fn read_u32<M: Memory>(mem: &M, at: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read(at, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

/// The interpreter behind `_PyRuntime` at `runtime`. The version comes from `Py_Version`
/// (3.11+, `packed`) or the file's name; the interpreter must then confirm it in `sys.version`.
pub(crate) fn interpreter_at<M: Memory>(
    pid: i32,
    mem: &M,
    runtime: u64,
    packed: Option<u32>,
    named: Option<PyVersion>,
) -> Result<Located, NotFound> {
    let from_packed = packed.filter(|v| v >> 24 == 3).map(|v| PyVersion::new(3, (v >> 16) as u8));
    let Some(version) = from_packed.or(named) else {
        return Err(NotFound::Other("its Python version cannot be told (no Py_Version, no version in its file name)".into()));
    };
    let Some(base) = layout::for_version(version) else { return Err(NotFound::Unsupported(version.to_string())) };
    // 3.13+: the interpreter's own offsets, `interpreters.head` among them.
    let (layout, _) = published::resolve(pid, mem, base);
    let mut word = [0u8; 8];
    mem.read(runtime.wrapping_add(layout.interp.runtime_head), &mut word).map_err(|e| NotFound::Other(format!("_PyRuntime: {e}")))?;
    let interp = u64::from_le_bytes(word);
    if !plausible_pointer(interp) {
        return Err(NotFound::Other("no interpreter in _PyRuntime yet (still starting?)".into()));
    }
    let r = ObjectReader::new(mem, layout);
    // Its first thread must belong to it, and its `sys.version` must be this version.
    let first = r.ptr(interp + layout.interp.threads_head).map_err(|e| NotFound::Other(e.to_string()))?;
    if first != 0 && r.ptr(first + layout.thread.interp).ok() != Some(interp) {
        return Err(NotFound::Other("the interpreter's first thread does not point back to it".into()));
    }
    let text = sys_version(&r, interp).ok_or_else(|| NotFound::Other("its sys.version could not be read (still starting?)".into()))?;
    // "3.12.1 (main, ...)", "3.15.0a2 (...)": the numbers before anything else.
    let number: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let parts: Vec<Option<u8>> = number.split('.').map(|p| p.parse().ok()).collect();
    match parts[..] {
        [Some(major), Some(minor), Some(patch)] if PyVersion::new(major, minor) == version => {
            Ok(Located { version, version_text: format!("{version}.{patch}"), interp })
        }
        _ => Err(NotFound::Other(format!("sys.version is {text:?}, not Python {version}"))),
    }
}

/// `sys.version`, through the interpreter's modules.
fn sys_version<M: Memory>(r: &ObjectReader<M>, interp: u64) -> Option<String> {
    let sys = interp::module_dict(r, interp, "sys").ok()??;
    let version = r.dict_get_str(sys, "version").ok()??;
    r.str_limited(version, 32).ok().map(|s| s.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names() {
        assert_eq!(version_of_file("libpython3.12.so.1.0"), Some(PyVersion::new(3, 12)));
        assert_eq!(version_of_file("libpython3.13d.so"), Some(PyVersion::new(3, 13)));
        assert_eq!(version_of_file("python3.9"), Some(PyVersion::new(3, 9)));
        assert_eq!(version_of_file("python3"), None);
        assert_eq!(version_of_file("libpython3.so"), None);
        assert_eq!(version_of_file("uwsgi"), None);
        assert!(is_libpython("libpython3.8.so.1.0") && !is_libpython("libpython3.so") && !is_libpython("python3.8"));
    }

    #[test]
    fn a_process_without_python_is_no_interpreter() {
        let me = std::process::id() as i32;
        let maps = mapped::read(me).unwrap();
        let mem = crate::process::memory::ProcessMemory::new(me);
        assert!(pyspy_sees_files(me, &maps, &mem), "no libpython: py-spy reads /proc/PID/exe");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(matches!(locate(me, &maps, exe.to_str(), &mem), Err(NotFound::Other(_))));
    }
}
