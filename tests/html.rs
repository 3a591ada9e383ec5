//! The HTML incident page (`--format html`) of a real recording, opened in a real browser
//! (Debian's headless Chromium): a recording of tests/targets/schedule.py (7 known blocks) is
//! written as HTML, JSON and a capture, and rendered again from the capture with `--focus
//! --hide-idle`. Chromium runs the page's scripts and dumps the DOM: one episode span per
//! episode (each at the time the target measured for its block), the charts, the four flame
//! graph views with the one asked for shown. Its screenshots are kept in target/artifacts/
//! (to look at) and checked to be pictures: not blank, with the red of the episodes.
//!
//! Under CI=true a missing chromium is a failure (.ci/run installs it); elsewhere the test
//! says loudly that it skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TEST: &str = "html/chromium";
const VERSION: &str = "3.12";

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Is Chromium here? Under CI it must be.
fn chromium() -> Option<&'static str> {
    match Command::new("chromium").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Some("chromium"),
        other if in_ci() => panic!("CI=true but chromium cannot run ({other:?}); .ci/run installs it (apt-get install chromium)"),
        other => {
            eprintln!("SKIPPED {TEST}: chromium cannot run here ({other:?}); apt-get install --no-install-recommends chromium");
            record(TEST, VERSION, "stock", "skipped (no chromium)");
            None
        }
    }
}

/// Run headless Chromium on `page` with `args`; its standard output (read from a file: a
/// page's DOM is larger than a pipe holds). Killed after 60 s.
fn run_chromium(bin: &str, profile: &Path, page: &Path, args: &[String]) -> String {
    let (out_path, err_path) = (profile.join("stdout.txt"), profile.join("stderr.txt"));
    let mut child = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--window-size=1280,1600"])
        .arg(format!("--user-data-dir={}", profile.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 60 s: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {args:?}: {status}: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
    std::fs::read_to_string(&out_path).unwrap()
}

/// An RGB(A) PNG decoded: (width, height, pixels as RGB).
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut at, mut idat, mut ihdr) = (8, Vec::new(), None);
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => ihdr = Some(data.to_vec()),
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let ihdr = ihdr.expect("IHDR");
    let (w, h) = (u32::from_be_bytes(ihdr[0..4].try_into().unwrap()) as usize, u32::from_be_bytes(ihdr[4..8].try_into().unwrap()) as usize);
    assert_eq!(ihdr[8], 8, "8 bits per channel");
    assert_eq!(ihdr[12], 0, "not interlaced");
    let bpp = match ihdr[9] {
        2 => 3,
        6 => 4,
        c => panic!("colour type {c}"),
    };
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate");
    let stride = w * bpp;
    assert_eq!(raw.len(), h * (stride + 1), "image data size");
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(w * h);
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= bpp { cur[i - bpp] as i32 } else { 0 };
            let b = prev[i] as i32;
            let c = if i >= bpp { prev[i - bpp] as i32 } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            cur[i] = line[i].wrapping_add(pred as u8);
        }
        pixels.extend(cur.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (w, h, pixels)
}

/// The screenshot is a picture of the page: mostly white paper with a good share of ink,
/// many colours, the episodes' red in the timeline (top third) and the flame graph's below.
fn check_screenshot(png: &Path) {
    let (w, h, px) = decode_png(&std::fs::read(png).unwrap());
    assert_eq!((w, h), (1280, 1600), "{}", png.display());
    let ink = px.iter().filter(|p| p.iter().any(|&c| c < 235)).count() as f64 / px.len() as f64;
    let mut colours: Vec<[u8; 3]> = px.iter().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
    colours.sort();
    colours.dedup();
    let red = |y0: usize, y1: usize| (y0 * w..y1 * w).filter(|&i| px[i][0] >= 190 && px[i][1] <= 90 && px[i][2] <= 90).count();
    assert!(ink > 0.08, "{}: only {:.1} % of the screenshot is not white", png.display(), 100.0 * ink);
    assert!(colours.len() >= 40, "{}: {} colours", png.display(), colours.len());
    assert!(red(0, 650) >= 200, "{}: no red episode spans in the timeline ({} red pixels)", png.display(), red(0, 650));
    assert!(red(650, 1600) >= 1000, "{}: no red blocking frames in the flame graph ({} red pixels)", png.display(), red(650, 1600));
}

/// The `<g class="episode" data-start=… data-ms=…>` spans of a dumped DOM: (start s, ms, hover text).
fn episode_spans(dom: &str) -> Vec<(f64, f64, String)> {
    let mut out = Vec::new();
    let needle = "<g class=\"episode\" data-start=\"";
    let mut rest = dom;
    while let Some(at) = rest.find(needle) {
        rest = &rest[at + needle.len()..];
        let start: f64 = rest[..rest.find('"').unwrap()].parse().unwrap();
        let ms_at = rest.find("data-ms=\"").unwrap() + 9;
        let ms: f64 = rest[ms_at..ms_at + rest[ms_at..].find('"').unwrap()].parse().unwrap();
        let t_at = rest.find("<title>").unwrap() + 7;
        let title = rest[t_at..t_at + rest[t_at..].find("</title>").unwrap()].to_string();
        out.push((start, ms, title));
    }
    out
}

/// The flame graph views in a dumped DOM: (data-focus, data-hide-idle, shown).
fn flame_views(dom: &str) -> Vec<(String, String, bool)> {
    let attr = |tag: &str, name: &str| -> String {
        let at = tag.find(&format!("{name}=\"")).map(|a| a + name.len() + 2).unwrap_or_else(|| panic!("{name} in {tag}"));
        tag[at..at + tag[at..].find('"').unwrap()].to_string()
    };
    dom.split("<iframe ")
        .skip(1)
        .map(|t| {
            let tag = &t[..t.find('>').unwrap()];
            let shown = tag.contains("display: block");
            assert!(shown || tag.contains("display: none"), "the page's script set every view's display: {}", &tag[..tag.len().min(300)]);
            (attr(tag, "data-focus"), attr(tag, "data-hide-idle"), shown)
        })
        .collect()
}

#[test]
fn incident_page_in_chromium() {
    let Some(bin) = chromium() else { return };
    let Some(interp) = require(VERSION, TEST) else { return };
    record(TEST, VERSION, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let out = Command::new(loopspy_bin())
        .args(["record", "--rate", "100", "--duration", "6.5", "-o"])
        .arg(p("incident.html"))
        .arg("-o")
        .arg(p("incident.json"))
        .arg("--save")
        .arg(p("incident.lsrec"))
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("schedule.py"))
        .arg(p("truth.json"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = Command::new(loopspy_bin())
        .arg("render")
        .arg(p("incident.lsrec"))
        .args(["--focus", "--hide-idle", "-o"])
        .arg(p("focus.html"))
        .arg("-o")
        .arg(p("focus.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(p("truth.json")).unwrap()).unwrap();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p("incident.json")).unwrap()).unwrap();
    let episodes = report["loops"][0]["episodes"].as_array().unwrap();
    let blocks = truth["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 7, "the target ran its schedule");
    // Writing the truth (at `written_at`, 0.3 s after the last block) may block the loop past
    // the threshold on a loaded machine: an episode of its own, not one of the schedule.
    let written_at = truth["written_at"].as_f64().unwrap();
    let scheduled = episodes.iter().filter(|e| e["start"].as_f64().unwrap() < written_at - 0.1).count();
    assert_eq!(scheduled, blocks.len(), "{episodes:#?}");
    let start = num(&report["recording"]["start"]);

    let artifacts = artifacts_dir();
    let profile = tempfile::tempdir().unwrap();
    for (page, shot, view) in [("incident.html", "incident-page.png", ("0", "0")), ("focus.html", "incident-page-focus.png", ("1", "1"))] {
        let page = p(page);
        std::fs::copy(&page, artifacts.join(page.file_name().unwrap())).unwrap();
        // One run: the screenshot once loaded, the DOM after the page's scripts ran.
        let png = artifacts.join(shot);
        let _ = std::fs::remove_file(&png);
        let dom = run_chromium(bin, profile.path(), &page, &[format!("--screenshot={}", png.display()), "--dump-dom".to_string()]);
        assert!(dom.contains("data-loopspy-ready=\"1\""), "the page's script ran: {}", &dom[..dom.len().min(2000)]);
        // One span per episode, where the target measured its block, with its hover text.
        let spans = episode_spans(&dom);
        assert_eq!(spans.len(), episodes.len(), "{}: spans {spans:#?}", page.display());
        for b in blocks {
            let (bs, be) = (num(&b["start"]) - start, num(&b["end"]) - start);
            let e = episodes
                .iter()
                .find(|e| num(&e["start"]) - start < be && num(&e["end"]) - start > bs)
                .unwrap_or_else(|| panic!("no episode for block {b}"));
            let (s, ms, title) = spans
                .iter()
                .find(|(s, _, _)| (s - num(&e["start_s"])).abs() < 0.001)
                .unwrap_or_else(|| panic!("no span for episode {e}: {spans:#?}"));
            assert!((ms - num(&e["duration_ms"])).abs() < 0.06, "span of {ms} ms for {e}");
            // Against the target's own clock: as tests/record.rs holds the episodes.
            let allowed_ms = 20f64.max(num(&e["duration_error_ms"]));
            // The start is off by at most the gap at that end, within the stated error.
            assert!((s - bs).abs() <= allowed_ms / 1e3, "span at {s} s for block at {bs:.3} s (± {allowed_ms:.1} ms)");
            assert!((ms - (be - bs) * 1e3).abs() <= allowed_ms, "span of {ms} ms for a block of {:.1} ms", (be - bs) * 1e3);
            let function = b["function"].as_str().unwrap();
            assert!(title.starts_with(&format!("{function} (")), "{title}");
            assert!(title.contains("task \"driver\"") || title.contains("task &quot;driver&quot;"), "{title}");
            let how = if b["kind"] == "cpu" { "on CPU" } else { "waiting in " };
            assert!(title.contains(how), "{title}");
        }
        // A chart per figure, each drawn.
        for class in ["lag-p99", "lag-max", "ready-mean", "ready-max", "busy", "tasks"] {
            let at = dom.find(&format!("class=\"series {class}\"")).unwrap_or_else(|| panic!("no {class} series"));
            let tag = &dom[at..at + dom[at..].find('>').unwrap()];
            assert!(tag.contains(" d=\"M") || tag.contains("points=\""), "{class} is empty: {tag}");
        }
        // Four flame graph views; the one asked for shown.
        let views = flame_views(&dom);
        assert_eq!(views.len(), 4, "{views:?}");
        let shown: Vec<_> = views.iter().filter(|v| v.2).collect();
        assert_eq!(shown.len(), 1, "{views:?}");
        assert_eq!((shown[0].0.as_str(), shown[0].1.as_str()), view, "{views:?}");

        check_screenshot(&png);
        println!("screenshot of {}: {}", page.file_name().unwrap().to_string_lossy(), png.display());
    }
    // The toggles: a link to a view (`#focus,hide-idle`) opens the full page on it.
    let dom = run_chromium(
        bin,
        profile.path(),
        Path::new(&format!("{}#focus,hide-idle", p("incident.html").display())),
        &["--dump-dom".to_string()],
    );
    let shown: Vec<_> = flame_views(&dom).into_iter().filter(|v| v.2).collect();
    assert_eq!(shown, [("1".to_string(), "1".to_string(), true)], "#focus,hide-idle");
    assert!(dom.contains("id=\"view-focus\"") && dom.contains("data-loopspy-ready=\"1\""));

    // The focused stacks start at the callback: no frame of the loop's own under a blocking
    // one, and every blocking stack starts in the driver task's coroutine.
    let folded = std::fs::read_to_string(p("focus.txt")).unwrap();
    let blocked: Vec<&str> = folded.lines().filter(|l| l.contains(";BLOCKING the loop")).collect();
    assert!(!blocked.is_empty(), "{folded}");
    for line in &blocked {
        let below: Vec<&str> = line.split(';').skip(2).collect();
        assert!(below[0].starts_with("driver ("), "{line}");
        for loop_frame in ["_run_once", "Handle._run", "run_forever", "run_until_complete", "<module>"] {
            assert!(!line.contains(loop_frame), "{loop_frame} in {line}");
        }
    }
    assert!(!folded.lines().any(|l| l.contains(";idle in select")), "idle hidden: {folded}");
    let shots = artifacts.join("incident-page{,-focus}.png");
    record(TEST, VERSION, "stock", &format!("pass ({} episode spans in Chromium; screenshots {})", episodes.len(), shots.display()));
}
