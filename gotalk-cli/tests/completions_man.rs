//! Shell completions and manual pages, generated from the same definitions as `--help`: bash
//! loads the script and completes with it, groff renders the pages without a warning, and every
//! subcommand is in each.

mod common;

use std::process::Command;

use common::*;

const SUBCOMMANDS: [&str; 10] = [
    "call",
    "notify",
    "listen",
    "connect",
    "serve",
    "bench",
    "proxy",
    "decode",
    "completions",
    "man",
];

/// Runs bash with the generated script loaded and asks it to complete `words`.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = text(&gotalk(&["completions", "bash"], b"").stdout);
    let dir = temp_dir("bash-completion");
    let path = dir.join("gotalk.bash");
    std::fs::write(&path, script).unwrap();
    let line = words.join(" ");
    let probe = format!(
        "source '{}'\nCOMP_WORDS=({line})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n_gotalk gotalk '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        path.display(),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let child = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &probe])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    let out = wait_output(child, &["bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let out = gotalk(&["completions", "bash"], b"");
    assert!(out.status.success());
    let script = text(&out.stdout);
    let parsed = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .expect("bash");
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));

    let all = bash_complete(&["gotalk", ""]);
    for sub in SUBCOMMANDS {
        assert!(all.iter().any(|w| w == sub), "{sub} not offered: {all:?}");
    }
    let c = bash_complete(&["gotalk", "c"]);
    let mut c: Vec<&str> = c.iter().map(String::as_str).collect();
    c.sort_unstable();
    assert_eq!(c, ["call", "completions", "connect"]);
    let flags = bash_complete(&["gotalk", "call", "--ti"]);
    assert_eq!(flags, ["--timeout"]);
    let shells = bash_complete(&["gotalk", "completions", "z"]);
    assert_eq!(shells, ["zsh"]);
}

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = gotalk(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        assert!(script.contains("timeout"), "{shell}: no flags");
    }
    assert_eq!(gotalk(&["completions", "tcsh"], b"").status.code(), Some(2));
}

/// Renders a page with groff, failing on any warning.
fn render(page: &[u8]) -> String {
    let dir = temp_dir("man-render");
    let path = dir.join("page.1");
    std::fs::write(&path, page).unwrap();
    let child = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff (groff-base) renders manual pages");
    let checked = wait_output(child, &["groff"]);
    assert!(
        checked.status.success() && checked.stderr.is_empty(),
        "{}",
        text(&checked.stderr)
    );
    let child = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P", "-cbou"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff");
    let out = wait_output(child, &["groff"]);
    let _ = std::fs::remove_dir_all(dir);
    text(&out.stdout)
}

#[test]
fn man_pages_render_and_cover_every_subcommand() {
    let out = gotalk(&["man"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = render(&out.stdout);
    assert!(
        page.contains("NAME") && page.contains("SUBCOMMANDS"),
        "{page}"
    );
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!("gotalk-{sub}(1)")), "{sub}:\n{page}");
    }
    assert!(
        page.contains("unix:///PATH"),
        "the addresses are in the page"
    );

    let dir = temp_dir("man-dir");
    let out = gotalk(&["man", "--dir", &dir.display().to_string()], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for sub in SUBCOMMANDS {
        let file = std::fs::read(dir.join(format!("gotalk-{sub}.1")))
            .unwrap_or_else(|e| panic!("gotalk-{sub}.1: {e}"));
        let page = render(&file);
        assert!(page.contains("SYNOPSIS"), "{sub}:\n{page}");
    }
    let call = render(&std::fs::read(dir.join("gotalk-call.1")).unwrap());
    assert!(
        call.contains("--timeout") && call.contains("--insecure"),
        "{call}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
