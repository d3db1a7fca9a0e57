//! Seeded fuzzing of the scenario loader and the simulator: every bundled scenario, mutated
//! a few thousand times (bytes deleted, tokens inserted, numbers and durations replaced by
//! extremes, lines duplicated, names swapped), must either be rejected with a located error or
//! run to its end — never a panic, never a run past a time bound.
//!
//! A failure prints the case's seed and the mutated text, so it can be replayed.

use sim_core::scenario::{RateChange, Workload};
use sim_core::{Scenario, ScenarioError};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Mutants per bundled scenario.
const CASES_PER_SCENARIO: u64 = 400;
/// A valid mutant is run only when its load is at most this many requests (in a shortened run).
const MAX_RUN_REQUESTS: f64 = 2_000.0;
/// Wall time a shortened run may take before it counts as a hang (debug build, loaded CI).
const RUN_BOUND: Duration = Duration::from_secs(60);

/// SplitMix64: a tiny seeded generator, enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Byte ranges of `text` where `pred` holds for a maximal run of characters starting at a
/// character that `start` accepts.
fn spans(text: &str, start: fn(char) -> bool, pred: fn(char) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if start(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                if !pred(d) {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            out.push((i, end));
        }
    }
    out
}

/// String literals (with their quotes).
fn strings(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut open = None;
    for (i, c) in text.char_indices() {
        if c == '"' {
            match open.take() {
                Some(s) => out.push((s, i + 1)),
                None => open = Some(i),
            }
        }
    }
    out
}

/// One random edit of `text`.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let boundary = |rng: &mut Rng| {
        let mut i = rng.below(text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let replace =
        |(a, b): (usize, usize), with: &str| format!("{}{with}{}", &text[..a], &text[b..]);
    match rng.below(6) {
        0 => {
            let a = boundary(rng);
            let mut b = (a + 1 + rng.below(3)).min(text.len());
            while !text.is_char_boundary(b) {
                b += 1;
            }
            replace((a, b), "")
        }
        1 => {
            let token = rng.pick(&[
                ",", "(", ")", "{", "}", "[", "]", "\"", ":", "0", "-1", "1e300", "\"x\"",
                "Some(1)", "\n", "é", "\u{0}", "//", "/*",
            ]);
            let a = boundary(rng);
            replace((a, a), token)
        }
        2 => {
            let numbers = spans(
                text,
                |c| c.is_ascii_digit(),
                |c| c.is_ascii_digit() || c == '.' || c == 'e',
            );
            if numbers.is_empty() {
                return text.to_owned();
            }
            let span = numbers[rng.below(numbers.len())];
            let with = rng.pick(&[
                "0",
                "-1",
                "1e300",
                "4294967295",
                "4294967296",
                "18446744073709551616",
                "1e-300",
                "NaN",
                "inf",
                "0.5",
                "100000000",
                "65536",
            ]);
            replace(span, with)
        }
        3 => {
            let durations: Vec<(usize, usize)> = strings(text)
                .into_iter()
                .filter(|&(a, b)| {
                    let s = &text[a + 1..b - 1];
                    s.starts_with(|c: char| c.is_ascii_digit())
                        && s.ends_with(|c: char| c.is_ascii_alphabetic())
                })
                .collect();
            if durations.is_empty() {
                return text.to_owned();
            }
            let span = durations[rng.below(durations.len())];
            let with = rng.pick(&[
                "\"0s\"",
                "\"1ns\"",
                "\"1000000h\"",
                "\"-1s\"",
                "\"1e9s\"",
                "\"1us\"",
                "\"24h\"",
                "\"99999999999999999999ms\"",
            ]);
            replace(span, with)
        }
        4 => {
            let lines: Vec<&str> = text.lines().collect();
            let i = rng.below(lines.len());
            let mut out: Vec<&str> = lines.clone();
            out.insert(i, lines[i]);
            out.join("\n")
        }
        _ => {
            let all = strings(text);
            if all.len() < 2 {
                return text.to_owned();
            }
            let (a, b) = (all[rng.below(all.len())], all[rng.below(all.len())]);
            replace(a, &text[b.0..b.1])
        }
    }
}

/// An upper bound on the requests a shortened run of `s` generates, or `None` when it cannot
/// be bounded cheaply (closed loops).
fn load_bound(s: &Scenario) -> Option<f64> {
    let secs = s.duration.0 as f64 / 1e9;
    let mut total = 0.0;
    for w in &s.workload {
        let Workload::OpenLoop(o) = w else {
            return None;
        };
        let peak = o
            .schedule
            .iter()
            .map(|c| match c {
                RateChange::Step { rate, .. } | RateChange::Ramp { rate, .. } => *rate,
            })
            .fold(o.rate, f64::max);
        total += peak * secs;
    }
    Some(total)
}

/// What became of a mutant that is not a defect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Rejected with a located error.
    Rejected,
    /// Valid, but its load too large to run here.
    Skipped,
    /// Valid, and ran to its end with every request accounted for.
    Ran,
}

/// Parses, validates and (when its load is small) runs one mutant; `Err` describes a defect.
fn check(file: &str, text: String) -> Result<Fate, String> {
    let parsed = std::panic::catch_unwind(|| {
        let s = sim_core::load::parse(file, &text)?;
        sim_core::load::validate(file, &text, &s)?;
        Ok::<Scenario, ScenarioError>(s)
    })
    .map_err(|_| "panicked while loading".to_owned())?;
    let mut s = match parsed {
        Ok(s) => s,
        Err(ScenarioError::Invalid { line, col, .. }) => {
            let lines = text.lines().count() + 1;
            return if line >= 1 && col >= 1 && line <= lines {
                Ok(Fate::Rejected)
            } else {
                Err(format!("rejected at {line}:{col}, outside the text"))
            };
        }
        Err(e) => return Err(format!("rejected without a position: {e}")),
    };
    // A shortened run: at most 1 s of load and 1 s of drain.
    s.duration.0 = s.duration.0.min(1_000_000_000);
    s.drain.0 = s.drain.0.min(1_000_000_000);
    if load_bound(&s).is_none_or(|n| n > MAX_RUN_REQUESTS) {
        return Ok(Fate::Skipped);
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| sim_core::run(&s, s.seed, &mut |_| {}));
        let _ = tx.send(match result {
            Ok(Ok(m)) if m.generated == m.totals.count => Ok(Fate::Ran),
            Ok(Ok(m)) => Err(format!(
                "lost requests: {} of {}",
                m.totals.count, m.generated
            )),
            // A mesh the loader accepted but the simulator refuses is a validation gap.
            Ok(Err(e)) => Err(format!("validated, then refused at run time: {e}")),
            Err(_) => Err("panicked while running".to_owned()),
        });
    });
    match rx.recv_timeout(RUN_BOUND) {
        Ok(r) => r,
        Err(_) => Err(format!("still running after {RUN_BOUND:?}")),
    }
}

#[test]
fn mutated_bundled_scenarios_never_panic_hang_or_go_unlocated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    // Quiet the default hook: the cases catch their own panics and report them.
    std::panic::set_hook(Box::new(|_| {}));
    let (mut cases, mut failures, mut fates) = (0, Vec::new(), Vec::<Fate>::new());
    for (f, path) in files.iter().enumerate() {
        let original = std::fs::read_to_string(path).expect("read");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        for case in 0..CASES_PER_SCENARIO {
            let seed = (f as u64) << 32 | case;
            let mut rng = Rng(seed);
            let mut text = original.clone();
            for _ in 0..=rng.below(3) {
                text = mutate(&text, &mut rng);
            }
            cases += 1;
            match check(name, text.clone()) {
                Ok(fate) => fates.push(fate),
                Err(why) => failures.push(format!(
                    "{name} seed {seed}: {why}\n--- mutant ---\n{text}\n---"
                )),
            }
        }
    }
    let _ = std::panic::take_hook();
    assert!(cases >= 2_000, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} mutants failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let count = |f: Fate| fates.iter().filter(|x| **x == f).count();
    let (rejected, ran) = (count(Fate::Rejected), count(Fate::Ran));
    eprintln!(
        "{cases} mutants: {rejected} rejected, {ran} ran, {} skipped",
        count(Fate::Skipped)
    );
    // Both paths are exercised: many mutants stay valid and run, many are rejected.
    assert!(
        rejected >= 500 && ran >= 200,
        "{rejected} rejected, {ran} ran"
    );
}
