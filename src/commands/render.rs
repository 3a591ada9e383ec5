//! `loopspy render`: a recording saved as a capture file (`record --save`, or the capture a
//! stopped `record` left behind) rendered again, with any threshold and format, without the
//! process.

use std::path::PathBuf;

use crate::analysis::metrics::{self, Options};
use crate::base::error::Failure;
use crate::base::escape;
use crate::capture::capture_file;
use crate::cli::config::RenderConfig;
use crate::output::argv;
use crate::output::outputs::{self, Rendering};
use crate::output::report::{self, TargetFacts};
use crate::python::published::LayoutCheck;

pub fn run(args: &RenderConfig) -> Result<(), Failure> {
    let capture =
        capture_file::read(&args.capture).map_err(|e| Failure::Usage { detail: format!("cannot read {}: {e}", args.capture.display()) })?;
    let stem = args.capture.with_extension("");
    let outputs = outputs::plan(&args.outputs, args.format, |f| stem.with_extension(f.extension()))?;
    let h = &capture.header;
    let rec = &capture.recording;
    if capture.cut {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "loopspy: {} ends before its end record (loopspy was stopped while recording): rendering the {:.1} s it holds\n",
                escape::terminal(&args.capture.display().to_string()),
                rec.duration()
            )
            .as_bytes(),
        );
    }
    let threshold = args.threshold;
    let analysis = metrics::analyze(rec, &Options { threshold, ..Options::default() });
    let facts = TargetFacts {
        pid: h.pid,
        command: argv::shown_list(&h.command, args.full_argv),
        python: h.python.clone(),
        layout: LayoutCheck { source: "from the capture file".into(), checked: 0, differences: Vec::new() },
    };
    let rep = report::build(facts, rec, &analysis, h.blocking);
    let command = argv::display(&h.command, args.full_argv);
    let rendering = Rendering {
        rec,
        analysis: &analysis,
        report: &rep,
        cwd: h.cwd.as_deref(),
        all_threads: h.all_threads,
        command: &command,
        stream: None,
        view: args.view,
        full: None,
    };
    let stem_name = PathBuf::from(stem.file_name().unwrap_or_default()).display().to_string();
    let written = outputs::write_all(&outputs, &rendering, &format!("{stem_name}-render"));
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report::summary(&rep, &written.written).as_bytes());
    for (asked, saved, why) in &written.moved {
        eprintln_safe(&format!(
            "loopspy: could not write {} ({}); saved it as {} instead",
            escape::terminal(asked),
            escape::terminal(why),
            saved.display()
        ));
    }
    if let Some((asked, why)) = written.lost.first() {
        return Err(Failure::OutputFailed { path: asked.clone(), detail: why.clone() });
    }
    if let Some((asked, saved, why)) = written.moved.first() {
        return Err(Failure::Reported {
            code: crate::base::error::exit::OUTPUT_FAILED,
            what: format!("could not write {asked} ({why}); saved as {}", saved.display()),
        });
    }
    Ok(())
}

fn eprintln_safe(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}
