//! Command-line handling shared by the benchmarks (included with
//! `#[path]`, each benchmark being its own crate).

/// What the command line asks criterion for, as far as a benchmark's setup
/// needs to know: which ids it will run (so nothing is prepared for
/// filtered-out benchmarks), and whether it only lists them or tests them
/// (`cargo test --benches`: one quick pass, so setup stays small).
pub struct Cli {
    filter: Option<String>,
    exact: bool,
    /// `--list`: nothing runs.
    pub list: bool,
    /// Run as a test, not measured.
    pub test: bool,
    ignored: bool,
}

impl Cli {
    /// Reads the arguments criterion was given.
    pub fn parse() -> Self {
        const WITH_VALUE: [&str; 18] = [
            "-c",
            "--color",
            "--colour",
            "-s",
            "--save-baseline",
            "-b",
            "--baseline",
            "--baseline-lenient",
            "--format",
            "--profile-time",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
        ];
        const WITH_VALUE_2: [&str; 2] = ["--plotting-backend", "--output-format"];
        let mut cli = Cli {
            filter: None,
            exact: false,
            list: false,
            test: false,
            ignored: false,
        };
        let (mut bench, mut test) = (false, false);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => bench = true,
                "--test" => test = true,
                "--list" => cli.list = true,
                "--exact" => cli.exact = true,
                "--ignored" => cli.ignored = true,
                a if WITH_VALUE.contains(&a) || WITH_VALUE_2.contains(&a) => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                a => {
                    if cli.filter.is_none() {
                        cli.filter = Some(a.to_string());
                    }
                }
            }
        }
        cli.test = !cli.list && (test || !bench);
        cli
    }

    /// Whether criterion may run `id`. Understands plain text, `a|b`, and
    /// `^`/`$` anchors; any other regex syntax is assumed to match (criterion
    /// then decides, at the cost of a setup it may not use).
    pub fn selects(&self, id: &str) -> bool {
        if self.ignored {
            return false;
        }
        let Some(filter) = &self.filter else {
            return true;
        };
        if self.exact {
            return filter == id;
        }
        filter.split('|').any(|alternative| {
            let start = alternative.starts_with('^');
            let end = alternative.ends_with('$') && !alternative.ends_with("\\$");
            let text = alternative.strip_prefix('^').unwrap_or(alternative);
            let text = if end { &text[..text.len() - 1] } else { text };
            if text.contains(|c| "\\.^$*+?()[]{}".contains(c)) {
                return true;
            }
            match (start, end) {
                (true, true) => id == text,
                (true, false) => id.starts_with(text),
                (false, true) => id.ends_with(text),
                (false, false) => id.contains(text),
            }
        })
    }
}
