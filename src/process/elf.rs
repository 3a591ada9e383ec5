//! Just enough ELF64 to find a named section or an exported symbol of a mapped file and where
//! it sits in the target's address space. Reads headers, the section-name table and the
//! dynamic symbols, not the whole binary; every offset and count from the file is bounded.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::process::memory::Memory;

const MAX_SECTIONS: u16 = 4096;
const MAX_SEGMENTS: u16 = 512;
const MAX_NAMES: u64 = 1 << 20;
/// Largest section header entry accepted (64 bytes in every real file).
const MAX_ENTRY: u64 = 256;
/// Largest `.dynsym` or `.dynstr` read (libpython's are about 100 kB).
const MAX_SYMBOL_BYTES: u64 = 64 << 20;

/// A section's link-time address and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub addr: u64,
    pub size: u64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a usable ELF64 file: {what}"))
}

fn read_at(f: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// An opened ELF64 little-endian file.
pub struct ElfFile {
    file: File,
    header: Vec<u8>,
}

impl ElfFile {
    pub fn open(path: &Path) -> io::Result<ElfFile> {
        ElfFile::from_file(File::open(path)?)
    }

    /// Wrap an already opened file (one opened through `/proc/PID/map_files`, say).
    pub fn from_file(file: File) -> io::Result<ElfFile> {
        let header = read_at(&file, 0, 64)?;
        if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return Err(bad("not 64-bit little-endian ELF"));
        }
        Ok(ElfFile { file, header })
    }

    /// The section header table: the raw entries and their size; `None` when the file has none.
    fn section_headers(&self) -> io::Result<Option<(Vec<u8>, u64, u16)>> {
        let shoff = u64_at(&self.header, 0x28);
        let shentsize = u16_at(&self.header, 0x3a) as u64;
        let shnum = u16_at(&self.header, 0x3c);
        if shoff == 0 || shnum == 0 {
            return Ok(None);
        }
        if !(64..=MAX_ENTRY).contains(&shentsize) || shnum > MAX_SECTIONS {
            return Err(bad("section header table"));
        }
        let table = read_at(&self.file, shoff, (shentsize * shnum as u64) as usize)?;
        Ok(Some((table, shentsize, shnum)))
    }

    /// The section called `name`, if the file has one.
    pub fn section(&self, name: &str) -> io::Result<Option<Section>> {
        let Some((table, shentsize, shnum)) = self.section_headers()? else { return Ok(None) };
        let shstrndx = u16_at(&self.header, 0x3e);
        if shstrndx >= shnum {
            return Err(bad("section header table"));
        }
        let entry = |i: u64| &table[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
        let names = entry(shstrndx as u64);
        let (names_off, names_size) = (u64_at(names, 0x18), u64_at(names, 0x20));
        if names_size > MAX_NAMES {
            return Err(bad("section name table"));
        }
        let names = read_at(&self.file, names_off, names_size as usize)?;
        for i in 0..shnum as u64 {
            let sh = entry(i);
            let at = u32_at(sh, 0) as usize;
            let Some(rest) = names.get(at..) else { continue };
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            if &rest[..end] == name.as_bytes() {
                return Ok(Some(Section { addr: u64_at(sh, 0x10), size: u64_at(sh, 0x20) }));
            }
        }
        Ok(None)
    }

    /// The link-time address of `name` among the symbols the file exports (`.dynsym`), if it
    /// defines it. A shared libpython exports `_PyRuntime` and `Py_Version`, and so does a
    /// `python` executable linked with `-export-dynamic` (for its extension modules).
    pub fn dynamic_symbol(&self, name: &str) -> io::Result<Option<u64>> {
        const SHT_DYNSYM: u32 = 11;
        const SYM_SIZE: usize = 24;
        let Some((table, shentsize, shnum)) = self.section_headers()? else { return Ok(None) };
        let entry = |i: u64| &table[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
        let Some(dynsym) = (0..shnum as u64).map(entry).find(|sh| u32_at(sh, 4) == SHT_DYNSYM) else { return Ok(None) };
        let link = u32_at(dynsym, 0x28) as u64;
        if link >= shnum as u64 {
            return Err(bad(".dynsym string table"));
        }
        let strtab = entry(link);
        let (sym_off, sym_size) = (u64_at(dynsym, 0x18), u64_at(dynsym, 0x20));
        let (str_off, str_size) = (u64_at(strtab, 0x18), u64_at(strtab, 0x20));
        if sym_size > MAX_SYMBOL_BYTES || str_size > MAX_SYMBOL_BYTES {
            return Err(bad("symbol table too large"));
        }
        let symbols = read_at(&self.file, sym_off, sym_size as usize)?;
        let names = read_at(&self.file, str_off, str_size as usize)?;
        for sym in symbols.chunks_exact(SYM_SIZE) {
            let at = u32_at(sym, 0) as usize;
            let Some(rest) = names.get(at..) else { continue };
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let defined = u16_at(sym, 6) != 0; // st_shndx: SHN_UNDEF is an import
            if defined && &rest[..end] == name.as_bytes() {
                return Ok(Some(u64_at(sym, 8)));
            }
        }
        Ok(None)
    }

    /// The lowest virtual address of a loadable segment (0 for PIE executables and shared
    /// objects): with the address the file's offset-0 mapping starts at, it gives the load bias.
    pub fn first_load_vaddr(&self) -> io::Result<u64> {
        let phoff = u64_at(&self.header, 0x20);
        let phentsize = u16_at(&self.header, 0x36) as u64;
        let phnum = u16_at(&self.header, 0x38);
        if !(56..=MAX_ENTRY).contains(&phentsize) || phnum == 0 || phnum > MAX_SEGMENTS {
            return Err(bad("program header table"));
        }
        let table = read_at(&self.file, phoff, (phentsize * phnum as u64) as usize)?;
        (0..phnum as u64)
            .map(|i| &table[(i * phentsize) as usize..])
            .filter(|ph| u32_at(ph, 0) == 1) // PT_LOAD
            .map(|ph| u64_at(ph, 0x10) & !0xfff)
            .min()
            .ok_or_else(|| bad("no loadable segment"))
    }
}

/// The runtime address of the symbol `name` that the ELF object loaded at `base` (the start
/// of its offset-0 mapping) exports, read from the process's memory alone: its program
/// headers, its dynamic section, its GNU hash table and its dynamic symbols, which the dynamic
/// linker needs and so are always mapped. For when the file itself cannot be opened (deleted,
/// or behind a directory loopspy's user may not enter). Everything read is bounded; anything
/// that does not add up is `None`.
pub fn exported_in_memory<M: Memory>(mem: &M, base: u64, name: &str) -> Option<u64> {
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const DT_NULL: u64 = 0;
    const DT_STRTAB: u64 = 5;
    const DT_SYMTAB: u64 = 6;
    const DT_STRSZ: u64 = 10;
    const DT_GNU_HASH: u64 = 0x6fff_fef5;
    const MAX_DYNAMIC: u64 = 1024;
    const MAX_BUCKETS: u64 = 1 << 24;
    const MAX_CHAIN: u64 = 1 << 20;
    let read = |at: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        mem.read(at, &mut buf).ok()?;
        Some(buf)
    };
    let u32_in = |at: u64| read(at, 4).map(|b| u32_at(&b, 0));
    let header = read(base, 64)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(&header, 0x20), u16_at(&header, 0x36) as u64, u16_at(&header, 0x38));
    if !(56..=MAX_ENTRY).contains(&phentsize) || phnum == 0 || phnum > MAX_SEGMENTS || phoff > 1 << 20 {
        return None;
    }
    let table = read(base.checked_add(phoff)?, (phentsize * phnum as u64) as usize)?;
    let segments: Vec<&[u8]> = (0..phnum as u64).map(|i| &table[(i * phentsize) as usize..((i + 1) * phentsize) as usize]).collect();
    let first = segments.iter().filter(|ph| u32_at(ph, 0) == PT_LOAD).map(|ph| u64_at(ph, 0x10) & !0xfff).min()?;
    let bias = base.wrapping_sub(first);
    // The dynamic linker may have relocated the dynamic section's pointers in place (glibc
    // does, musl does not): a pointer below the object's base is still a link-time address.
    let at = |v: u64| if v < base { v.wrapping_add(bias) } else { v };
    let dynamic = segments.iter().find(|ph| u32_at(ph, 0) == PT_DYNAMIC)?;
    let count = (u64_at(dynamic, 0x28) / 16).min(MAX_DYNAMIC) as usize;
    let entries = read(bias.wrapping_add(u64_at(dynamic, 0x10)), count * 16)?;
    let (mut strtab, mut symtab, mut strsz, mut gnu_hash) = (None, None, None, None);
    for e in entries.chunks_exact(16) {
        let (tag, value) = (u64_at(e, 0), u64_at(e, 8));
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(at(value)),
            DT_SYMTAB => symtab = Some(at(value)),
            DT_STRSZ => strsz = Some(value),
            DT_GNU_HASH => gnu_hash = Some(at(value)),
            _ => {}
        }
    }
    let (strtab, symtab, strsz, hash_at) = (strtab?, symtab?, strsz?, gnu_hash?);
    let head = read(hash_at, 16)?;
    let (nbuckets, symoffset, bloom_size) = (u32_at(&head, 0) as u64, u32_at(&head, 4) as u64, u32_at(&head, 8) as u64);
    if nbuckets == 0 || nbuckets > MAX_BUCKETS || bloom_size > MAX_BUCKETS {
        return None;
    }
    let hash = name.bytes().fold(5381u32, |h, c| h.wrapping_mul(33).wrapping_add(c as u32));
    let buckets = hash_at.wrapping_add(16).wrapping_add(bloom_size * 8);
    let chains = buckets.wrapping_add(nbuckets * 4);
    let first = u32_in(buckets.wrapping_add((hash as u64 % nbuckets) * 4))? as u64;
    if first < symoffset {
        return None;
    }
    for index in first..first + MAX_CHAIN {
        let chain = u32_in(chains.wrapping_add((index - symoffset) * 4))?;
        if chain | 1 == hash | 1 {
            let sym = read(symtab.wrapping_add(index * 24), 24)?;
            let name_at = u32_at(&sym, 0) as u64;
            if name_at + (name.len() as u64) < strsz {
                let found = read(strtab.wrapping_add(name_at), name.len() + 1)?;
                if &found[..name.len()] == name.as_bytes() && found[name.len()] == 0 && u16_at(&sym, 6) != 0 {
                    return Some(bias.wrapping_add(u64_at(&sym, 8)));
                }
            }
        }
        if chain & 1 == 1 {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_binary_has_text_and_a_load_segment() {
        let elf = ElfFile::open(Path::new("/proc/self/exe")).unwrap();
        let text = elf.section(".text").unwrap().expect(".text");
        assert!(text.size > 0);
        assert!(elf.section(".no-such-section").unwrap().is_none());
        assert_eq!(elf.first_load_vaddr().unwrap() % 4096, 0);
    }

    #[test]
    fn garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk");
        std::fs::write(&p, b"\x7fELF\x02\x01garbage").unwrap();
        assert!(ElfFile::open(&p).is_err());
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x28..0x30].copy_from_slice(&1_000_000u64.to_le_bytes());
        header[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        header[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        std::fs::write(&p, &header).unwrap();
        let elf = ElfFile::open(&p).unwrap();
        assert!(elf.section(".text").is_err());
        assert!(elf.dynamic_symbol("_PyRuntime").is_err());
        assert!(elf.first_load_vaddr().is_err());
        // Entries of 60 kB each: refused, not allocated.
        header[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        header[0x3a..0x3c].copy_from_slice(&60_000u16.to_le_bytes());
        std::fs::write(&p, &header).unwrap();
        assert!(ElfFile::open(&p).unwrap().dynamic_symbol("x").is_err());
    }

    #[test]
    fn exported_symbols_are_found_in_memory_as_in_the_file() {
        let me = std::process::id() as i32;
        let maps = crate::process::mapped::read(me).unwrap();
        let libc = maps.iter().find(|m| m.offset == 0 && m.file_name().is_some_and(|n| n.starts_with("libc.so"))).expect("libc");
        let elf = ElfFile::open(Path::new(libc.path.as_deref().unwrap())).unwrap();
        let mem = crate::process::memory::ProcessMemory::new(me);
        let bias = libc.start - elf.first_load_vaddr().unwrap();
        for name in ["malloc", "free", "printf"] {
            let from_file = elf.dynamic_symbol(name).unwrap().map(|v| v + bias);
            assert_eq!(exported_in_memory(&mem, libc.start, name), from_file, "{name}");
            assert!(from_file.is_some(), "{name}");
        }
        assert_eq!(exported_in_memory(&mem, libc.start, "no_such_symbol_anywhere"), None);
        // Not an ELF header there.
        assert_eq!(exported_in_memory(&mem, libc.start + 4096, "malloc"), None);
    }

    proptest::proptest! {
        /// Any bytes where an ELF object should be: an answer or none, never a panic.
        #[test]
        fn exported_in_memory_survives_garbage(mut blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 64..4096), seed: u64) {
            blob[..6].copy_from_slice(b"\x7fELF\x02\x01");
            let mut mem = crate::process::memory::FakeMemory::new();
            // Pointers into the blob now and then, so the walk goes somewhere.
            for (i, chunk) in blob.chunks_exact_mut(8).enumerate().skip(4) {
                if (seed >> (i % 64)) & 1 == 1 {
                    chunk.copy_from_slice(&(0x10_0000u64 + (u64::from(chunk[0]) * 8) % 4096).to_le_bytes());
                }
            }
            mem.map(0x10_0000, blob);
            let _ = exported_in_memory(&mem, 0x10_0000, "_PyRuntime");
        }
    }

    #[test]
    fn exported_symbols_are_found() {
        // Our own binary exports nothing by default; libc (mapped into us) exports plenty.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("libc.so")).expect("libc mapped");
        let elf = ElfFile::open(Path::new(libc)).unwrap();
        assert!(elf.dynamic_symbol("malloc").unwrap().is_some_and(|a| a > 0));
        assert_eq!(elf.dynamic_symbol("no_such_symbol_anywhere").unwrap(), None);
    }
}
