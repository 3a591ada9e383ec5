//! Where a recording's outputs go, and writing them so that nothing is lost and nothing half
//! written is left behind.
//!
//! - Outputs are planned before recording starts: each directory must be writable (checked by
//!   creating and removing a probe file: no output file exists before there is something to put
//!   in it), duplicates are written once, and at most one document goes to standard output.
//! - Each file is written to a new temporary file beside it, then renamed over the target: a
//!   reader never sees half a flame graph, and a symlink at the target is replaced, not
//!   followed.
//! - A file that cannot be written (a full disk, a vanished directory) is saved in the temp
//!   directory instead, under a new name, and the message says where.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::RecordFormat;
use crate::analysis::metrics::Analysis;
use crate::base::error::Failure;
use crate::capture::recording::Recording;
use crate::output::flamegraph::{self, Header, View};
use crate::output::report::{self, RecordReport};

/// One output: a file (or standard output) in a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub path: Option<PathBuf>,
    pub format: RecordFormat,
}

impl Output {
    pub fn name(&self) -> String {
        self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "standard output".into())
    }
}

/// The outputs asked for (`-o`), checked: duplicates dropped, one standard output at most,
/// every directory writable. `default` names the file used when none was asked for.
pub fn plan(
    asked: &[PathBuf],
    format: Option<RecordFormat>,
    default: impl FnOnce(RecordFormat) -> PathBuf,
) -> Result<Vec<Output>, Failure> {
    let mut outputs: Vec<Output> = Vec::new();
    for p in asked {
        let o = Output {
            path: (p.as_os_str() != "-").then(|| p.clone()),
            format: RecordFormat::from_path(p).or(format).unwrap_or(RecordFormat::Svg),
        };
        if !outputs.contains(&o) {
            outputs.push(o);
        }
    }
    if outputs.is_empty() {
        let f = format.unwrap_or(RecordFormat::Svg);
        outputs.push(Output { path: Some(default(f)), format: f });
    }
    let stdout: Vec<&Output> = outputs.iter().filter(|o| o.path.is_none()).collect();
    if stdout.len() > 1 {
        return Err(Failure::Usage {
            detail: "two different formats asked on standard output (-o -): one document can go there; give files for the others".into(),
        });
    }
    for o in &outputs {
        if let Some(p) = &o.path {
            check_writable(p)?;
        }
    }
    Ok(outputs)
}

/// Can a file be created at `path`? Checked by creating (and removing) a new file beside it.
fn check_writable(path: &Path) -> Result<(), Failure> {
    let fail = |detail: String| Failure::OutputFailed { path: path.display().to_string(), detail };
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            // A device or a FIFO: written in place at the end (opening a FIFO now would wait
            // for its reader).
            return Ok(());
        }
    }
    let dir = parent_dir(path);
    let probe = dir.join(format!(".loopspy-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(fail(format!("{e} (in {})", dir.display()))),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `bytes` to `path` through a new temporary file renamed over it. A path that is not a
/// regular file (a FIFO, a terminal, `/dev/stdout`) is written in place: renaming over a
/// device would replace the device.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            return f.write_all(bytes).and_then(|_| f.flush());
        }
    }
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let mut n = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|_| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// A new file in the temp directory (never an existing one, never through a symlink).
pub fn save_in_temp(stem: &str, extension: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir();
    for n in 0..100 {
        let path = dir.join(if n == 0 { format!("{stem}.{extension}") } else { format!("{stem}-{n}.{extension}") });
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                return match f.write_all(bytes).and_then(|_| f.sync_all()) {
                    Ok(()) => Ok(path),
                    Err(e) => {
                        drop(f);
                        let _ = std::fs::remove_file(&path);
                        Err(e)
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free name in the temp directory"))
}

/// What a recording is rendered from.
pub struct Rendering<'a> {
    pub rec: &'a Recording,
    pub analysis: &'a Analysis,
    pub report: &'a RecordReport,
    pub cwd: Option<&'a str>,
    pub all_threads: bool,
    /// The command line as shown (shortened, secrets redacted).
    pub command: &'a str,
    /// The stream that folded the flame graph's stacks as the samples came (a recording that
    /// did not keep its samples), with the other threads' fold (`--all-threads`); without
    /// it they are folded from `rec`.
    pub stream: Option<(&'a crate::analysis::stream::Stream, Option<&'a crate::analysis::stream::ThreadsFold>)>,
    /// The flame graph's view in the SVG and collapsed outputs (`--focus`, `--hide-idle`),
    /// and the one the HTML page shows first.
    pub view: View,
    /// The recording with every sample (read back from its capture file) when `rec` holds
    /// only the last ones (`record` lets samples go as it writes them): the Perfetto trace
    /// draws each sample. `None`: `rec` holds them all, or they are gone.
    pub full: Option<&'a Recording>,
}

impl Rendering<'_> {
    fn folded(&self, view: View) -> flamegraph::Folded {
        match self.stream {
            Some((stream, threads)) => flamegraph::fold_stream_view(self.rec, stream, threads, self.analysis.threshold_ms, self.cwd, view),
            None => flamegraph::fold_view(self.rec, self.analysis, self.cwd, self.all_threads, view),
        }
    }

    fn title(&self) -> String {
        match &self.report.processes {
            Some(p) => format!(
                "loopspy: PID {} {} and its subprocesses ({} process{} with event loops)",
                self.report.target.pid,
                self.command,
                p.len(),
                if p.len() == 1 { "" } else { "es" }
            ),
            None => format!("loopspy: PID {} {}", self.report.target.pid, self.command),
        }
    }

    /// The flame graph in a view, as an SVG document titled `title`.
    fn flame_svg(&self, view: View, title: String) -> io::Result<Vec<u8>> {
        let folded = self.folded(view);
        let mut subtitle = report::headline(self.rec, self.analysis);
        if let Some(note) = view.note() {
            subtitle = format!("{subtitle} | {note}");
        }
        let header = Header { title, subtitle };
        let mut out = Vec::new();
        flamegraph::svg(&folded, &header, self.analysis.threshold_ms, &mut out)?;
        Ok(out)
    }
}

/// The bytes of one output.
pub fn render(format: RecordFormat, r: &Rendering) -> io::Result<Vec<u8>> {
    Ok(match format {
        RecordFormat::Json => serde_json::to_vec_pretty(r.report).map_err(io::Error::other)?,
        RecordFormat::Jsonl => super::jsonl::whole(r.rec, &start_facts(r)).into_bytes(),
        RecordFormat::Collapsed => {
            let mut text = r.folded(r.view).collapsed().join("\n");
            text.push('\n');
            text.into_bytes()
        }
        RecordFormat::Perfetto => super::perfetto::trace(&super::perfetto::Source {
            rec: r.full.unwrap_or(r.rec),
            analysis: r.analysis,
            pid: r.report.target.pid,
            command: &r.report.target.command,
        }),
        RecordFormat::Svg => r.flame_svg(r.view, r.title())?,
        RecordFormat::Html => {
            // The page's heading has the command line: the flame graphs' titles stay short.
            let short = format!("loopspy: PID {}{}", r.report.target.pid, if r.rec.is_fleet() { " and its subprocesses" } else { "" });
            let flames = View::ALL.iter().map(|&v| Ok((v, r.flame_svg(v, short.clone())?))).collect::<io::Result<Vec<_>>>()?;
            let page = super::html::Page {
                rec: r.rec,
                analysis: r.analysis,
                cwd: r.cwd,
                title: &r.title(),
                subtitle: &report::headline(r.rec, r.analysis),
                flames,
                initial: r.view,
            };
            super::html::page(&page).into_bytes()
        }
    })
}

/// The `start` line of JSON lines, from what a rendering knows.
pub fn start_facts(r: &Rendering) -> super::jsonl::StartFacts {
    super::jsonl::StartFacts {
        pid: r.report.target.pid,
        command: r.report.target.command.clone(),
        python: r.report.target.python.clone(),
        rate_hz: r.rec.rate_hz,
        threshold_ms: r.analysis.threshold_ms,
    }
}

/// What writing the outputs did.
#[derive(Debug, Default)]
pub struct Written {
    /// Outputs written where asked.
    pub written: Vec<String>,
    /// Outputs saved elsewhere: (asked, where, why).
    pub moved: Vec<(String, PathBuf, String)>,
    /// Outputs that could not be saved anywhere: (asked, why).
    pub lost: Vec<(String, String)>,
}

/// Write every output; one that cannot be written where asked is saved in the temp directory.
pub fn write_all(outputs: &[Output], r: &Rendering, stem: &str) -> Written {
    let mut w = Written::default();
    for o in outputs {
        let bytes = match render(o.format, r) {
            Ok(b) => b,
            Err(e) => {
                w.lost.push((o.name(), format!("could not render it: {e}")));
                continue;
            }
        };
        let result = match &o.path {
            None => {
                let mut out = io::stdout().lock();
                out.write_all(&bytes).and_then(|_| out.flush())
            }
            Some(path) => write_atomically(path, &bytes),
        };
        match result {
            Ok(()) => w.written.push(o.name()),
            Err(e) => match save_in_temp(stem, o.format.extension(), &bytes) {
                Ok(saved) => w.moved.push((o.name(), saved, e.to_string())),
                Err(e2) => w.lost.push((o.name(), format!("{e}; saving it in {} failed too ({e2})", std::env::temp_dir().display()))),
            },
        }
    }
    w
}

/// An output written a line at a time while recording (JSON lines): each line in one write,
/// flushed at once, so that a reader (`tail -f`, `jq`, a log shipper) sees whole lines as
/// they come, and a loopspy killed mid-run leaves only whole lines behind. A file is created
/// anew (a symlink at its path is replaced, never followed). After the first failed write
/// (a full disk, a closed pipe) nothing more is written; [`LineSink::error`] says why and
/// [`LineSink::missed`] holds the lines from then on.
#[derive(Debug)]
pub struct LineSink {
    pub output: Output,
    file: Option<std::fs::File>,
    error: Option<String>,
    /// The lines from the failed write on ([`LineSink::missed`]).
    missed: String,
}

impl LineSink {
    pub fn open(output: &Output) -> LineSink {
        let mut sink = LineSink { output: output.clone(), file: None, error: None, missed: String::new() };
        if let Some(path) = &output.path {
            match create_fresh(path) {
                Ok(f) => sink.file = Some(f),
                Err(e) => sink.error = Some(e.to_string()),
            }
        }
        sink
    }

    pub fn write(&mut self, line: &str) {
        if self.error.is_some() {
            self.missed.push_str(line);
            return;
        }
        let result = match &mut self.file {
            Some(f) => f.write_all(line.as_bytes()),
            None => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|_| out.flush())
            }
        };
        if let Err(e) = result {
            self.error = Some(e.to_string());
            self.missed.push_str(line);
        }
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The lines not written, from the failed one on (a line may be there whole and also in
    /// the output in part, if the failing write wrote some of it).
    pub fn missed(&self) -> &str {
        &self.missed
    }
}

/// A new file at `path` for writing: a regular file or symlink there is removed first (so a
/// symlink is never followed); a device or FIFO is opened as it is.
fn create_fresh(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() || meta.is_file() {
            std::fs::remove_file(path)?;
        } else if !meta.is_dir() {
            return std::fs::OpenOptions::new().write(true).open(path);
        }
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// `20261122T031500Z`: UTC, from the system clock.
pub fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_compact_utc() {
        let t = super::timestamp();
        assert_eq!(t.len(), 16, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[8] == b'T', "{t}");
    }

    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn outputs_are_checked_without_creating_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let bad = PathBuf::from("/nonexistent-dir/x.svg");
        let err = plan(&[a.clone(), bad], None, |_| PathBuf::from("x")).unwrap_err();
        assert!(matches!(err, Failure::OutputFailed { .. }), "{err:?}");
        assert!(!a.exists(), "no empty file left behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no probe left behind");
    }

    #[test]
    fn duplicates_are_written_once_and_one_document_goes_to_stdout() {
        let dash = PathBuf::from("-");
        let p = plan(&[dash.clone(), dash.clone()], None, |_| PathBuf::from("x")).unwrap();
        assert_eq!(p.len(), 1);
        let err = plan(&[dash.clone(), dash], Some(RecordFormat::Json), |_| PathBuf::from("x"));
        assert_eq!(err.unwrap().len(), 1);
        let json_and_svg = plan(&[PathBuf::from("-")], Some(RecordFormat::Json), |_| PathBuf::from("x")).unwrap();
        assert_eq!(json_and_svg[0].format, RecordFormat::Json);
    }

    #[test]
    fn atomic_writes_replace_symlinks_instead_of_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let link = dir.path().join("out.svg");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomically(&link, b"<svg/>").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&link).unwrap(), b"<svg/>");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // Only the output is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn devices_are_written_in_place() {
        // /dev/null takes anything, /dev/full says the disk is full: neither is replaced.
        write_atomically(Path::new("/dev/null"), b"x").unwrap();
        let err = write_atomically(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(std::fs::metadata("/dev/full").unwrap().file_type().is_char_device());
    }

    #[test]
    fn temp_saves_never_reuse_a_name() {
        let stem = format!("loopspy-test-{}", std::process::id());
        let a = save_in_temp(&stem, "txt", b"a").unwrap();
        let b = save_in_temp(&stem, "txt", b"b").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"a");
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }
}
