//! `loopspy <cmd> -- program args...`: start a program in a process group of its own, and stop
//! it again when loopspy is done unless asked to keep it; a watchdog stops it if loopspy dies
//! first. (Finding its event loop is `capture::launch`.)

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::base::error::Failure;
use crate::process::procfs;

/// How long the program gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(25);

/// A program loopspy started, in its own process group, and the watchdog that stops it if
/// loopspy dies without doing so (SIGKILL, a crash): a spawned program is never orphaned.
pub struct Spawned {
    child: Child,
    program: String,
    keep: bool,
    /// The watchdog's standard input: closing it (loopspy exiting, however) makes the
    /// watchdog stop the program's process group; `keep` written first makes it leave it.
    watchdog: Option<ChildStdin>,
}

/// The hidden subcommand that runs the watchdog (`loopspy __watchdog PGID`).
pub const WATCHDOG: &str = "__watchdog";

impl Spawned {
    /// Start `argv`. Its stdout goes to our stderr so that loopspy's own output (a report,
    /// JSON) stays clean; its stdin is closed.
    /// `keep`: leave it running when loopspy is done (else it dies with loopspy).
    pub fn start(argv: &[String], keep: bool) -> Result<Spawned, Failure> {
        Self::start_in(argv, None, keep)
    }

    /// [`start`](Self::start) in a given working directory.
    pub fn start_in(argv: &[String], cwd: Option<&std::path::Path>, keep: bool) -> Result<Spawned, Failure> {
        let program = argv.first().cloned().unwrap_or_default();
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Failure::SpawnFailed { program: program.clone(), detail: e.to_string() })?;
        let mut command = Command::new(&program);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs in the child
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // The program dies with loopspy (a SIGKILL of loopspy included)...
                if !keep {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("loopspy exited while starting the program"));
                }
                Ok(())
            });
        }
        let child = command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr))
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::SpawnFailed { program: program.clone(), detail: e.to_string() })?;
        // ... and so does what it starts (a shell script's or `uv run`'s child): the watchdog
        // stops the whole process group when loopspy is gone.
        let watchdog = if keep { None } else { start_watchdog(child.id() as i32) };
        Ok(Spawned { child, program, keep, watchdog })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Leave the program running when this value is dropped.
    pub fn keep_running(&mut self) {
        self.keep = true;
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.write_all(b"keep\n");
        }
    }

    /// The program as given (`argv[0]`).
    pub fn program(&self) -> &str {
        &self.program
    }

    /// How the program itself exited, if it has (what it started may still run).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stop the program's process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        let pgid = Pid::from_raw(self.pid());
        if matches!(self.child.try_wait(), Ok(Some(_))) && procfs::descendants(self.pid()).is_empty() {
            return;
        }
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) && procfs::descendants(self.pid()).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
        // Closing the pipe ends the watchdog (its group is gone or kept).
        self.watchdog.take();
    }
}

/// Start `loopspy __watchdog PGID` in a session of its own (so a hang-up or Ctrl-C of the
/// terminal does not reach it), its standard input a pipe from us. `None` if it cannot start
/// (the program is then covered by its death signal alone).
fn start_watchdog(pgid: i32) -> Option<ChildStdin> {
    let exe = std::env::current_exe().ok()?;
    let mut command = Command::new(exe);
    command.arg(WATCHDOG).arg(pgid.to_string()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().ok()?;
    child.stdin.take()
}

/// The watchdog: wait until loopspy closes our standard input (it exited, or was killed),
/// then stop process group `pgid` (SIGTERM, SIGKILL after the grace period), unless loopspy
/// said `keep` first.
pub fn watchdog(pgid: i32) -> i32 {
    let mut said = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut said);
    if said.starts_with(b"keep") || pgid <= 1 {
        return 0;
    }
    let group = Pid::from_raw(pgid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return 0; // already gone
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if killpg(group, None).is_err() {
            return 0;
        }
        std::thread::sleep(POLL);
    }
    let _ = killpg(group, Signal::SIGKILL);
    0
}
