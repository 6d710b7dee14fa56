//! A tiny command-line parser: `--key value` pairs and bare `--flag`s. The binaries here take a
//! handful of numeric options; a full parser would be more code to read than it saves.

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed `--key value` options and `--flag`s.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses the process arguments. `flags` names the options that take no value.
    pub fn from_env(flags: &[&str]) -> Args {
        Args::parse(std::env::args().skip(1), flags)
    }

    /// Parses `args`. `flags` names the options that take no value.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Args {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                fail(&format!("unexpected argument {a:?}"));
            };
            if let Some((k, v)) = key.split_once('=') {
                out.values.insert(k.to_owned(), v.to_owned());
            } else if flags.contains(&key) {
                out.flags.push(key.to_owned());
            } else {
                let v = it
                    .next()
                    .unwrap_or_else(|| fail(&format!("--{key} needs a value")));
                out.values.insert(key.to_owned(), v);
            }
        }
        out
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// The value of `--name`, parsed, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{name}: cannot parse {v:?}"))),
            None => default,
        }
    }

    /// The value of `--name` as text, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// Prints `msg` and exits with status 2.
pub fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_flags() {
        let a = Args::parse(
            ["--conns", "16", "--smoke", "--size=1024"].map(String::from),
            &["smoke"],
        );
        assert_eq!(a.get("conns", 1u32), 16);
        assert_eq!(a.get("size", 0usize), 1024);
        assert_eq!(a.get("inflight", 7u32), 7);
        assert!(a.flag("smoke"));
        assert!(!a.flag("other"));
    }
}
