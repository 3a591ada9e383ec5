//! The output formats of `record` and `render`, and which one a file name asks for.

/// Output formats of `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFormat {
    /// An SVG flame graph; blocking frames in red, idle time in grey-blue.
    Svg,
    /// Collapsed stacks (`frame;frame;frame weight`), weights in microseconds.
    Collapsed,
    /// Every metric, the per-second series and every episode (docs/json-schema.md).
    Json,
    /// JSON lines, written as the recording goes: one per second and loop, one per episode as
    /// it ends, a last one at the end (docs/json-schema.md).
    Jsonl,
    /// A Perfetto trace (`.pftrace`) for ui.perfetto.dev: blocking episodes as slices on each
    /// loop's thread, lag, ready queue, busy share and pending tasks as counters, samples as
    /// stacks (docs/perfetto.md).
    Perfetto,
    /// One self-contained HTML page: lag, ready queue, busy share and pending tasks over
    /// time with each blocking episode as a span, above the flame graph (full or focused,
    /// idle shown or hidden).
    Html,
}

impl RecordFormat {
    /// The format a file name's extension asks for.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "svg" => Some(RecordFormat::Svg),
            "json" => Some(RecordFormat::Json),
            "jsonl" | "ndjson" => Some(RecordFormat::Jsonl),
            "html" | "htm" => Some(RecordFormat::Html),
            "txt" | "folded" | "collapsed" => Some(RecordFormat::Collapsed),
            "pftrace" | "perfetto-trace" => Some(RecordFormat::Perfetto),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            RecordFormat::Svg => "svg",
            RecordFormat::Collapsed => "txt",
            RecordFormat::Json => "json",
            RecordFormat::Jsonl => "jsonl",
            RecordFormat::Perfetto => "pftrace",
            RecordFormat::Html => "html",
        }
    }

    /// Written as the recording goes (by `record`), not once at the end.
    pub fn is_streamed(self) -> bool {
        self == RecordFormat::Jsonl
    }
}
