//! Just enough ELF64 to find a named section or an exported symbol of a mapped file and where
//! it sits in the target's address space. Reads headers, the section-name table and the
//! dynamic symbols, not the whole binary; every offset and count from the file is bounded.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

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
    fn exported_symbols_are_found() {
        // Our own binary exports nothing by default; libc (mapped into us) exports plenty.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("libc.so")).expect("libc mapped");
        let elf = ElfFile::open(Path::new(libc)).unwrap();
        assert!(elf.dynamic_symbol("malloc").unwrap().is_some_and(|a| a > 0));
        assert_eq!(elf.dynamic_symbol("no_such_symbol_anywhere").unwrap(), None);
    }
}
