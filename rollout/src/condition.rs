//! Argo Rollouts' `successCondition` / `failureCondition`, the part of `expr-lang/expr` that
//! analysis templates use on a single-valued result: comparisons of `result` (or
//! `result[0]`) with a number, joined by `&&` and `||` (`&&` binds tighter), e.g.
//! `result[0] >= 0.95` or `result > 0.1 && result < 0.9`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A parsed condition; it keeps its source text for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    text: String,
    /// Alternatives (`||`), each a conjunction (`&&`) of comparisons.
    any: Vec<Vec<Comparison>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Comparison {
    /// `result OP value` (the number is normalised to the right).
    op: Op,
    value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            other => other,
        }
    }
}

impl Condition {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut any = Vec::new();
        for alternative in text.split("||") {
            let mut all = Vec::new();
            for part in alternative.split("&&") {
                all.push(comparison(part.trim())?);
            }
            any.push(all);
        }
        Ok(Condition {
            text: text.trim().to_owned(),
            any,
        })
    }

    /// Whether the condition holds for `result`.
    pub fn holds(&self, result: f64) -> bool {
        (self.any.iter()).any(|all| all.iter().all(|c| c.holds(result)))
    }
}

impl Comparison {
    fn holds(&self, x: f64) -> bool {
        let v = self.value;
        match self.op {
            Op::Lt => x < v,
            Op::Le => x <= v,
            Op::Gt => x > v,
            Op::Ge => x >= v,
            Op::Eq => x == v,
            Op::Ne => x != v,
        }
    }
}

fn comparison(part: &str) -> Result<Comparison, String> {
    const OPS: [(&str, Op); 6] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];
    let Some((at, sym, op)) = OPS
        .iter()
        .find_map(|(sym, op)| part.find(sym).map(|at| (at, *sym, *op)))
    else {
        return Err(format!(
            "`{part}`: expected a comparison such as `result[0] >= 0.95` (one of >= <= == != > <)"
        ));
    };
    let (left, right) = (part[..at].trim(), part[at + sym.len()..].trim());
    match (is_result(left), is_result(right)) {
        (true, false) => Ok(Comparison {
            op,
            value: number(right)?,
        }),
        (false, true) => Ok(Comparison {
            op: op.flipped(),
            value: number(left)?,
        }),
        _ => Err(format!(
            "`{part}`: compare `result` (or `result[0]`) with a number"
        )),
    }
}

fn is_result(s: &str) -> bool {
    matches!(s, "result" | "result[0]")
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{s}`: expected a number"))
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Condition::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_either_way_round_and_combined() {
        let c = Condition::parse("result[0] >= 0.95").expect("parses");
        assert!(c.holds(0.95) && c.holds(1.0) && !c.holds(0.9499));
        let c = Condition::parse("0.1 < result && result < 0.9 || result == 1").expect("parses");
        assert!(c.holds(0.5) && c.holds(1.0) && !c.holds(0.1) && !c.holds(0.95));
        assert_eq!(c.to_string(), "0.1 < result && result < 0.9 || result == 1");
    }

    #[test]
    fn bad_conditions_say_what_is_expected() {
        let e = Condition::parse("result[0] ~ 3").expect_err("no operator");
        assert!(e.contains("expected a comparison"), "{e}");
        let e = Condition::parse("len(result) > 1").expect_err("not result");
        assert!(e.contains("compare `result`"), "{e}");
        let e = Condition::parse("result > high").expect_err("not a number");
        assert!(e.contains("expected a number"), "{e}");
    }
}
