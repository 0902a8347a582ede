//! The command line's edges: shell completions and man pages generated
//! from the clap definitions, no colour codes into pipes, and `jailer
//! query`'s messages in jailer's own voice.

use crate::cli::{fails, jailer, ok, pool_with_template};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, f: fn() -> Result<(), String>| {
        Trial::test(format!("cli_polish::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "completions_for_bash_zsh_fish_know_the_verbs_and_options",
            completions,
        ),
        t("man_writes_a_page_for_jailer_and_every_verb", man_pages),
        t(
            "verbose_log_into_a_pipe_has_no_ansi_escapes",
            no_ansi_in_pipe,
        ),
        t(
            "query_errors_say_jailer_query_not_the_extension",
            query_prefix,
        ),
        t(
            "query_warning_about_a_broken_jail_says_it_is_listed_not_skipped",
            broken_warning,
        ),
    ]
}

/// The root the pool-less verbs get: they never look at it.
fn no_pool() -> PathBuf {
    crate::scratch().fresh_dir("cli-polish-nopool")
}

fn completions() -> Result<(), String> {
    let root = no_pool();
    let bash = ok(&root, &["completions", "bash"])?;
    for needle in ["start", "--template", "complete -F", "jailer"] {
        if !bash.contains(needle) {
            return Err(format!("bash completions lack {needle:?}:\n{bash}"));
        }
    }
    let zsh = ok(&root, &["completions", "zsh"])?;
    if !zsh.starts_with("#compdef jailer") || !zsh.contains("--template") {
        return Err(format!("zsh completions:\n{zsh}"));
    }
    let fish = ok(&root, &["completions", "fish"])?;
    if !fish.contains("complete -c jailer") || !fish.contains("-l template") {
        return Err(format!("fish completions:\n{fish}"));
    }
    // Something to pass to bash: it must parse (where bash is installed:
    // the VM lane's guest has only busybox, whose sh is no judge of it).
    let check = match std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("completions: no bash here, the script's syntax is not checked");
            None
        }
        r => Some(r.map_err(|e| format!("run bash -n: {e}"))?),
    };
    if let Some(check) = check.filter(|c| !c.status.success()) {
        return Err(format!(
            "bash -n rejects the script: {}",
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    let tcsh = jailer(&root, &["completions", "tcsh"]);
    let err = String::from_utf8_lossy(&tcsh.stderr);
    if tcsh.status.code() != Some(2) || !err.contains("tcsh") || !err.contains("bash") {
        return Err(format!("completions tcsh: {}: {err}", tcsh.status));
    }
    Ok(())
}

/// The verbs `jailer --help` lists (but `help`).
fn verbs(root: &Path) -> Result<Vec<String>, String> {
    let help = ok(root, &["--help"])?;
    let mut in_cmds = false;
    let mut verbs = Vec::new();
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            // Wrapped descriptions are indented further than the verbs.
            if line.starts_with("  ") && !line.starts_with("   ") {
                let verb = line.split_whitespace().next().unwrap_or_default();
                if verb != "help" {
                    verbs.push(verb.to_string());
                }
            }
        }
    }
    if verbs.len() < 10 {
        return Err(format!("cannot read the verbs from --help:\n{help}"));
    }
    Ok(verbs)
}

fn man_pages() -> Result<(), String> {
    let root = no_pool();
    let out = root.join("man1");
    let listed = ok(&root, &["man", "--out", out.to_str().unwrap_or_default()])?;
    let mut want = vec!["jailer".to_string()];
    want.extend(verbs(&root)?.iter().map(|v| format!("jailer-{v}")));
    want.push("jailer-template-import".into());
    for page in &want {
        let path = out.join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (jailer man printed:\n{listed})", path.display()))?;
        // roff: the title line names the page and section 1.
        let th = text
            .lines()
            .find(|l| l.starts_with(".TH "))
            .ok_or_else(|| format!("{page}.1 has no .TH line:\n{text}"))?;
        let fields: Vec<&str> = th.split_whitespace().collect();
        if fields.get(1) != Some(&page.as_str()) || fields.get(2) != Some(&"1") {
            return Err(format!("{page}.1: title {th:?}"));
        }
        if !text.contains(".SH NAME") || !text.contains(".SH SYNOPSIS") {
            return Err(format!("{page}.1 lacks NAME or SYNOPSIS:\n{text}"));
        }
        if !listed.lines().any(|l| l.ends_with(&format!("/{page}.1"))) {
            return Err(format!("jailer man did not list {page}.1:\n{listed}"));
        }
    }
    let start = std::fs::read_to_string(out.join("jailer-start.1")).map_err(|e| e.to_string())?;
    if !start.contains("wait") {
        return Err(format!("jailer-start.1 does not document --wait:\n{start}"));
    }
    // man(1) itself, where it is installed, renders the page.
    if let Ok(o) = std::process::Command::new("man")
        .arg("-l")
        .arg(out.join("jailer-start.1"))
        .env("MANPAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        if o.status.success() && !text.contains("jailer-start") {
            return Err(format!("man -l jailer-start.1:\n{text}"));
        }
    }
    // A file in the way of the directory: said, with the path.
    let blocked = root.join("a-file");
    std::fs::write(&blocked, "").map_err(|e| e.to_string())?;
    fails(
        &root,
        &["man", "--out", blocked.to_str().unwrap_or_default()],
        &["man page", blocked.to_str().unwrap_or_default()],
    )?;
    Ok(())
}

fn no_ansi_in_pipe() -> Result<(), String> {
    let root = crate::cli::fresh_pool("cli-polish-ansi")?;
    let src = crate::cli::small_tree("cli-polish-ansi-src")?;
    // `output()` gives stderr a pipe, as `jailer -vv ... 2>&1 | less` does;
    // `ls` logs nothing at debug level, an import does (the copy's counts).
    let import = [
        "-vv",
        "template",
        "import",
        "base",
        src.to_str().unwrap_or_default(),
        "--",
        "/bin/sh",
    ];
    for args in [&import[..], &["-vv", "ls"]] {
        let out = jailer(&root, args);
        if !out.status.success() {
            return Err(format!(
                "jailer {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if out.stderr.contains(&0x1b) {
            return Err(format!(
                "jailer {args:?}: ESC bytes in the log written into a pipe: {:?}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if args[1] == "template" && !String::from_utf8_lossy(&out.stderr).contains("DEBUG") {
            return Err(format!(
                "jailer {args:?} logged no debug line: the test would prove nothing: {:?}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

fn query_prefix() -> Result<(), String> {
    let root = pool_with_template("cli-polish-query")?;
    let err = fails(&root, &["query", "select nonsense"], &["nonsense"])?;
    if !err.starts_with("jailer: query: ") || err.contains("jailer-extension") {
        return Err(format!("query error: {err:?}"));
    }
    Ok(())
}

fn broken_warning() -> Result<(), String> {
    let root = pool_with_template("cli-polish-broken")?;
    ok(&root, &["create", "pb-bad", "--template", "base"])?;
    std::fs::write(root.join("jails/pb-bad/jail.json"), "{ not json").map_err(|e| e.to_string())?;
    let out = jailer(&root, &["query", "SELECT name, state FROM jails", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("query failed: {stderr}"));
    }
    let rows: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
    if rows != serde_json::json!([{"name": "pb-bad", "state": "broken"}]) {
        return Err(format!("rows: {rows}"));
    }
    // It is listed: the warning must not say it was skipped, and must say
    // what is wrong and what the query shows.
    if stderr.contains("skipped") || !stderr.contains("pb-bad") || !stderr.contains("broken") {
        return Err(format!("warning: {stderr:?}"));
    }
    if !stderr.contains("state broken") {
        return Err(format!("warning does not say how it is listed: {stderr:?}"));
    }
    Ok(())
}
