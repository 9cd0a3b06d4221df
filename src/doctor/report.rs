//! What `doctor` found: one line per check, rendered as text or JSON. Pure.

use serde::Serialize;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Could not be checked with what was given (no `--pod`, no `--aws`, an earlier failure).
    Skip,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Skip => "skip",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One check: what was compared and, unless it passed, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name, e.g. `issuer.flag`.
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Ok, message, None::<String>)
    }

    pub fn skip(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Skip, message, None::<String>)
    }

    pub fn warn(id: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, message, Some(fix))
    }

    pub fn fail(id: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, message, Some(fix))
    }

    fn new(
        id: &'static str,
        status: Status,
        message: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) -> Self {
        Self {
            id,
            status,
            message: message.into(),
            fix: fix.map(Into::into),
        }
    }
}

/// Every check of one run, in the order they ran.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// One line per check (`ok   issuer.flag  ...`), the fix indented below, and a summary.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!(
                "{:<4} {:<width$}  {}\n",
                check.status.label(),
                check.id,
                check.message
            ));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("     {:<width$}  fix: {fix}\n", ""));
            }
        }
        out.push_str(&format!(
            "{} ok, {} warnings, {} failed, {} skipped\n",
            self.count(Status::Ok),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.count(Status::Skip)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_decides_and_fixes_are_shown() {
        let mut report = Report::default();
        report.push(Check::ok("issuer.flag", "same"));
        report.push(Check::skip("role.trust", "no --aws"));
        report.push(Check::fail("keys.token", "kid k1 not published", "refresh"));
        report.push(Check::warn("public.discovery", "slow", "cache"));
        assert_eq!(report.count(Status::Fail), 1);
        let text = report.text();
        assert!(
            text.contains("FAIL keys.token        kid k1 not published\n"),
            "{text}"
        );
        assert!(text.contains("fix: refresh"), "{text}");
        assert!(
            text.ends_with("1 ok, 1 warnings, 1 failed, 1 skipped\n"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][2]["status"], "fail");
        assert!(json["checks"][0].get("fix").is_none());
    }
}
