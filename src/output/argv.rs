//! A target's command line as shown: short, and without its secrets. A command line is
//! public inside the machine (`ps`) but not outside it, and loopspy's outputs (a flame graph
//! attached to an incident, a JSON report) leave the machine: so values of options whose names
//! say they are secret (`--password=...`, `--api-token x`, `DB_SECRET=...`) and credentials in
//! URLs (`postgres://user:pass@host`) are replaced by `***`, and the whole is cut at
//! [`MAX_CHARS`] characters, visibly. `--full-argv` shows it as it is.

/// Longest command line shown.
pub const MAX_CHARS: usize = 200;

/// Words that make an option's value a secret.
const SECRET_WORDS: &[&str] = &["password", "passwd", "pwd", "token", "secret", "key", "credential", "auth", "cookie", "session"];

fn secret_name(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    !n.is_empty() && SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// `scheme://user:password@host...` with the password replaced.
fn redact_url(arg: &str) -> Option<String> {
    let scheme_end = arg.find("://")? + 3;
    let rest = &arg[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let hidden = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_string() };
    Some(format!("{}{hidden}{}", &arg[..scheme_end], &rest[at..]))
}

/// The arguments with secret values replaced by `***`.
pub fn redact(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for arg in argv {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
            continue;
        }
        if let Some((name, _)) = arg.split_once('=') {
            if secret_name(name) {
                out.push(format!("{name}=***"));
                continue;
            }
        }
        if let Some(r) = redact_url(arg) {
            out.push(r);
            continue;
        }
        if arg.starts_with('-') && !arg.contains('=') && secret_name(arg) {
            hide_next = true;
        }
        out.push(arg.clone());
    }
    out
}

/// The command line to show: redacted and shortened, unless `full`.
pub fn display(argv: &[String], full: bool) -> String {
    if full {
        return argv.join(" ");
    }
    let joined = redact(argv).join(" ");
    let chars = joined.chars().count();
    if chars <= MAX_CHARS {
        return joined;
    }
    let cut: String = joined.chars().take(MAX_CHARS).collect();
    format!("{cut}...[{chars} chars]")
}

/// The command line as a list (for JSON): redacted, and cut after [`MAX_CHARS`] characters in
/// all (the last element kept says how long the whole was), unless `full`.
pub fn shown_list(argv: &[String], full: bool) -> Vec<String> {
    if full {
        return argv.to_vec();
    }
    let redacted = redact(argv);
    let total: usize = redacted.iter().map(|a| a.chars().count() + 1).sum::<usize>().saturating_sub(1);
    if total <= MAX_CHARS {
        return redacted;
    }
    let mut out = Vec::new();
    let mut budget = MAX_CHARS;
    for a in redacted {
        let n = a.chars().count();
        if n <= budget {
            budget -= n.min(budget);
            budget = budget.saturating_sub(1);
            out.push(a);
        } else {
            out.push(a.chars().take(budget).collect());
            break;
        }
    }
    out.push(format!("...[{total} chars]"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secrets_are_redacted() {
        let argv = v(&[
            "python3",
            "app.py",
            "--password=hunter2",
            "--api-token",
            "abc123",
            "DB_SECRET=x",
            "--db",
            "postgres://app:s3cret@db:5432/prod",
            "https://token@example.com/x",
            "--port",
            "8080",
            "--keyfile",
            "/etc/k.pem",
        ]);
        let shown = redact(&argv).join(" ");
        for secret in ["hunter2", "abc123", "DB_SECRET=x", "s3cret", "token@", "/etc/k.pem"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("--port 8080"));
        assert!(shown.contains("postgres://app:***@db:5432/prod"), "{shown}");
        assert!(shown.contains("https://***@example.com/x"), "{shown}");
        assert!(shown.contains("--password=***"));
    }

    #[test]
    fn long_command_lines_are_cut_visibly() {
        let argv = v(&["python3", &"x".repeat(100_000)]);
        let shown = display(&argv, false);
        assert!(shown.len() < 250, "{}", shown.len());
        assert!(shown.ends_with("...[100008 chars]"), "{shown}");
        assert_eq!(display(&argv, true).len(), 100_008);
        assert_eq!(display(&v(&["a", "b"]), false), "a b");
        let list = shown_list(&argv, false);
        assert_eq!(list.last().unwrap(), "...[100008 chars]");
        assert!(list.iter().map(|a| a.len()).sum::<usize>() < 250);
        assert_eq!(shown_list(&v(&["a", "--token=x"]), false), v(&["a", "--token=***"]));
    }
}
