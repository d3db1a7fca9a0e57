//! JUnit XML for CI systems: one test suite, one test case per gate, a `<failure>` for each
//! breach (the format Jenkins, GitLab and GitHub test reporters read).

use super::Verdict;
use std::fmt::Write;

/// The JUnit document for `verdicts`; `suite` names the test suite (the scenario).
pub fn junit(suite: &str, verdicts: &[Verdict]) -> String {
    let failures = verdicts.iter().filter(|v| !v.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"meshtwin\" tests=\"{}\" failures=\"{failures}\">",
        verdicts.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        xml(suite),
        verdicts.len()
    );
    for v in verdicts {
        let name = xml(&v.name);
        if v.passed {
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{}\"><system-out>{}</system-out></testcase>",
                xml(suite),
                xml(&v.observed)
            );
        } else {
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{}\">\n      <failure message=\"{}\" type=\"threshold\">{name} breached: {}</failure>\n    </testcase>",
                xml(suite),
                xml(&v.observed),
                xml(&v.observed)
            );
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// `s` escaped for XML text and attributes.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
